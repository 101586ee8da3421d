from pathlib import Path

import numpy as np
import pytest
import yaml

from anas.errors import SpaceError
from anas.space.schema import builtin_space_names, load_space, space_from_dict, space_to_dict
from anas.space.search_space import hidden_width, make_divisible, se_width

SPACES = Path(__file__).resolve().parents[1] / "anas" / "spaces"


def test_builtin_spaces_are_listed_and_load():
    assert builtin_space_names() == ["attentive-nas", "cifar", "tiny"]
    for name in builtin_space_names():
        space = load_space(name)
        assert space.name == name
        assert len(space.width_choices) == space.num_stages + 2


def test_attentive_nas_is_the_reference_space(attentive):
    assert attentive.num_classes == 1000
    assert attentive.resolutions == (192, 224, 256, 288)
    assert attentive.first_conv.widths == (16, 24)
    assert [s.name for s in attentive.stages] == [f"mb{i}" for i in range(1, 8)]
    assert [s.widths for s in attentive.stages][4] == (112, 120, 128)
    assert attentive.stages[5].depths == (3, 4, 5, 6, 7, 8)
    assert [s.se for s in attentive.stages] == [False, False, True, False, True, True, True]
    assert [s.stride for s in attentive.stages] == [1, 2, 2, 2, 1, 2, 1]
    assert attentive.stages[0].expand_ratios == (1,)
    assert attentive.head.widths == (1792, 1984)
    assert attentive.activation == "swish"
    assert sorted(attentive.models) == [f"a{i}" for i in range(7)]


def test_user_space_file_loads(tmp_path):
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    data["name"] = "mine"
    data["stages"][0]["widths"] = [8, 24]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    space = load_space(str(path))
    assert space.name == "mine"
    assert space.stages[0].widths == (8, 24)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda d: d.pop("stages"), "'stages': missing"),
        (lambda d: d["stages"][1].pop("depths"), "'stages[1].depths': missing"),
        (lambda d: d["stages"][1].update(depths=[1, "two"]), "'stages[1].depths[1]'"),
        (lambda d: d["stages"][2].update(kernel_size=[3]), "'stages[2].kernel_size': unknown key"),
        (lambda d: d["stages"][0].update(kernel_sizes=[3, 4]), "'stages[0].kernel_sizes[1]'"),
        (lambda d: d["head"].update(widths=[]), "'head.widths'"),
        (lambda d: d.update(resolutions=[32, 32]), "'resolutions': choices must be distinct"),
        (lambda d: d.update(activation="gelu"), "'activation'"),
        (lambda d: d["stages"][1].update(activation="tanh"), "'stages[1].activation': expected one of"),
        (lambda d: d.update(num_classes=0), "'num_classes'"),
        (lambda d: d.update(stages=[]), "'stages'"),
        (lambda d: d["first_conv"].update(stride="2"), "'first_conv.stride'"),
        (lambda d: d.update(models={"m": {"resolution": 32}}), "'models.m'"),
    ],
)
def test_malformed_space_file_names_the_key(tmp_path, edit, key):
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpaceError) as info:
        load_space(str(path))
    assert key in str(info.value)
    assert "\n" not in str(info.value)


def test_invalid_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(str(path))
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(str(tmp_path / "absent.yaml"))
    with pytest.raises(SpaceError, match="unknown space 'imagenet'"):
        load_space("imagenet")


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("!!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(str(path))


def test_width_rules():
    # nearest multiple of 8, at least 8, +8 when below 90 %
    assert make_divisible([3, 12, 20, 100, 131]).tolist() == [8, 16, 24, 104, 128]
    assert int(make_divisible(11)) == 16  # 8 < 0.9 * 11 -> 16
    assert hidden_width(16, 1).item() == 16
    assert hidden_width(24, 4.5).item() == 112  # round(108) -> 112
    assert hidden_width(np.array([16, 24]), np.array([1, 6])).tolist() == [16, 144]
    assert se_width(576).item() == 144
    assert se_width(48).item() == 16  # 12 -> 16


def test_a_stage_may_have_its_own_activation(tmp_path):
    data = yaml.safe_load((SPACES / "tiny.yaml").read_text())
    data["stages"][1]["activation"] = "relu"
    space = space_from_dict(data)
    assert [s.activation for s in space.stages] == ["swish", "relu", "swish"]
    written = space_to_dict(space)
    assert [s.get("activation") for s in written["stages"]] == [None, "relu", None]  # only where it differs
    assert space_from_dict(written) == space
    assert [s.activation for s in load_space("tiny").stages] == ["swish"] * 3


@pytest.mark.parametrize("name", ["tiny", "cifar", "attentive-nas"])
def test_the_column_layout_names_each_setting_where_the_table_has_it(name):
    from anas.space.table_format import setting_columns

    space = load_space(name)
    names, columns, n = setting_columns(space), space.columns, space.num_stages
    assert names[columns.resolution] == "resolution"
    assert names[columns.width] == [f"width_{g}" for g in range(n + 2)]
    for setting in ("depth", "kernel_size", "expand_ratio"):
        assert names[getattr(columns, setting)] == [f"{setting}_{i}" for i in range(n)]
    for i in range(n):
        assert [names[c] for c in columns.stage(i)] == [f"width_{i + 1}", f"depth_{i}", f"kernel_size_{i}",
                                                        f"expand_ratio_{i}"]
    assert (names[columns.first_conv_width], names[columns.head_width]) == ("width_0", f"width_{n + 1}")
    assert len(names) == len(space.column_choices()) == columns.expand_ratio.stop
