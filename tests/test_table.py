import numpy as np
import pandas as pd
import pytest

from anas.errors import TableError
from anas.space.arch import sample_archs
from anas.space.cost import batch_costs
from anas.space.table_format import archs_to_frame, frame_to_archs, read_table, setting_columns, write_table


def test_columns_follow_the_space(attentive, tiny):
    cols = setting_columns(attentive)
    assert cols[:2] == ["resolution", "width_0"]
    assert cols[9] == "width_8" and cols[10] == "depth_0" and cols[-1] == "expand_ratio_6"
    assert len(cols) == 1 + 9 + 3 * 7
    assert len(setting_columns(tiny)) == 1 + 5 + 3 * 3


def test_round_trip_through_csv(tiny, tmp_path):
    batch = sample_archs(tiny, 50, np.random.default_rng(0))
    frame = archs_to_frame(tiny, batch, batch_costs(tiny, batch))
    assert list(frame.columns) == setting_columns(tiny) + ["mflops", "params_m"]
    assert frame["expand_ratio_1"].dtype == np.int64
    path = write_table(frame, tmp_path / "sub" / "t.csv")
    back = frame_to_archs(tiny, read_table(path), str(path))
    assert list(back) == list(batch)
    assert not list(tmp_path.glob("sub/.*"))  # no temporary file left behind


def _frame(tiny):
    return archs_to_frame(tiny, sample_archs(tiny, 5, np.random.default_rng(0)))


def test_missing_column(tiny):
    with pytest.raises(TableError, match="missing column.*depth_2"):
        frame_to_archs(tiny, _frame(tiny).drop(columns=["depth_2"]), "r.csv")


def test_non_numeric_cell_names_line_and_column(tiny):
    frame = _frame(tiny).astype(object)
    frame.loc[3, "kernel_size_1"] = "five"
    with pytest.raises(TableError, match="line 5, column kernel_size_1: 'five' is not a number"):
        frame_to_archs(tiny, frame, "r.csv")


def test_value_off_the_space(tiny):
    frame = _frame(tiny)
    frame.loc[2, "width_4"] = 100
    with pytest.raises(TableError, match=r"line 4, column width_4: 100 is not a choice of space tiny \(allowed: 64, 128\)"):
        frame_to_archs(tiny, frame, "r.csv")


def test_unreadable_files(tmp_path):
    with pytest.raises(TableError, match="does not exist"):
        read_table(tmp_path / "absent.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(TableError, match="not a valid CSV"):
        read_table(empty)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(TableError, match="not a valid CSV"):
        read_table(ragged)


def test_empty_table(tiny):
    with pytest.raises(TableError, match="no rows"):
        frame_to_archs(tiny, pd.DataFrame(columns=setting_columns(tiny)), "r.csv")
