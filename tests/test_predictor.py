import json

import numpy as np
import pytest

from anas.errors import AnasError, TableError
from anas.predict.features import feature_matrix, feature_names
from anas.predict.folder import load_predictor, save_predictor
from anas.predict.kinds import PredictorError
from anas.predict.kinds.lightgbm import LightGBMOptions
from anas.predict.kinds.lightgbm import LightGBMPredictor as Predictor
from anas.predict.metrics import rank_metrics, split_indices
from anas.predict.records import read_records
from anas.space.arch import ArchBatch, largest_arch, sample_archs, smallest_arch
from anas.space.cost import batch_costs
from anas.space.sampling import spread_sample
from anas.space.table_format import archs_to_frame, write_table


def _synthetic(space, n, seed=0):
    rng = np.random.default_rng(seed)
    batch = sample_archs(space, n, rng)
    mflops = batch_costs(space, batch).mflops
    return batch, 60 + 10 * np.log(mflops) + batch.kernel_size.sum(axis=1) * 0.5 + rng.normal(0, 0.3, n)


def test_features_follow_the_table_columns(attentive):
    names = feature_names(attentive)
    assert names[:2] == ["resolution", "width_0"] and names[-4:] == ["mflops", "log_mflops", "params_m", "total_depth"]
    batch = ArchBatch.from_archs([smallest_arch(attentive)])
    x = feature_matrix(attentive, batch)
    assert x.shape == (1, len(names))
    assert abs(x[0, names.index("mflops")] - 203.389568) < 1e-6 and x[0, names.index("total_depth")] == 17


def test_rank_metrics():
    m = rank_metrics(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0]))
    assert m["kendall_tau"] == pytest.approx(1.0) and m["spearman_rho"] == pytest.approx(1.0) and m["mae"] == 22.5
    assert rank_metrics(np.array([1, 2, 3.0]), np.array([3, 2, 1.0]))["kendall_tau"] == pytest.approx(-1.0)


def test_fit_save_load_round_trip(tiny, tmp_path):
    batch, acc = _synthetic(tiny, 300)
    predictor = Predictor.fit(tiny, batch, acc, LightGBMOptions(n_estimators=200))
    test, test_acc = _synthetic(tiny, 100, seed=1)
    assert rank_metrics(test_acc, predictor.predict(test))["kendall_tau"] > 0.6
    save_predictor(predictor, tmp_path, {"kendall_tau": 0.5})
    loaded = load_predictor(tmp_path)
    assert isinstance(loaded, Predictor)
    assert np.allclose(loaded.predict(test), predictor.predict(test))
    meta = json.loads((tmp_path / "predictor.json").read_text())
    assert meta["kind"] == "lightgbm" and meta["space_name"] == "tiny" and meta["features"] == feature_names(tiny)
    assert set(meta["versions"]) >= {"lightgbm", "anas", "scipy"} and meta["n_train"] == 300
    archs = list(test)[:7]
    assert np.allclose(loaded.predict_archs(archs), loaded.predict(ArchBatch.from_archs(archs)))


def test_predictor_folder_errors(tiny, attentive, tmp_path):
    with pytest.raises(PredictorError, match="does not exist"):
        load_predictor(tmp_path / "nope")
    with pytest.raises(PredictorError, match="has no predictor.json"):
        load_predictor(tmp_path)
    batch, acc = _synthetic(tiny, 60)
    save_predictor(Predictor.fit(tiny, batch, acc, LightGBMOptions(n_estimators=20)), tmp_path)
    with pytest.raises(PredictorError, match="fitted on space tiny, but the run is of space attentive-nas"):
        load_predictor(tmp_path).check_space(attentive, "the run")
    (tmp_path / "predictor.txt").write_text("garbage")
    with pytest.raises(PredictorError, match="not a LightGBM text model"):
        load_predictor(tmp_path)
    (tmp_path / "predictor.txt").unlink()
    with pytest.raises(PredictorError, match="has no predictor.txt"):
        load_predictor(tmp_path)
    (tmp_path / "predictor.json").write_text("{not json")
    with pytest.raises(PredictorError, match="not valid JSON"):
        load_predictor(tmp_path)


def test_split_needs_records_on_both_sides():
    train, test = split_indices(100, 0.2, 0)
    assert len(train) == 80 and len(test) == 20 and not set(train) & set(test)
    with pytest.raises(AnasError, match="too few"):
        split_indices(6, 0.2, 0)


def test_spread_sample_covers_the_range(attentive):
    archs = spread_sample(attentive, 40, seed=0)
    assert len(archs) == 40 and len(set(archs)) == 40
    assert archs[0] == smallest_arch(attentive) and archs[1] == largest_arch(attentive)
    mflops = np.sort(batch_costs(attentive, ArchBatch.from_archs(archs)).mflops)
    gaps = np.diff(mflops)
    assert gaps.max() < 3 * (mflops[-1] - mflops[0]) / 39  # evenly spread, no big hole
    assert spread_sample(attentive, 40, seed=0) == archs


def test_read_records_checks_every_cell(tiny, tmp_path):
    batch, acc = _synthetic(tiny, 10)
    frame = archs_to_frame(tiny, batch, batch_costs(tiny, batch))
    frame["acc1"] = acc
    frame["mflops"] = 0.0  # wrong: recomputed on reading
    path = tmp_path / "r.csv"
    write_table(frame, path)
    back = read_records(path, tiny)
    assert np.allclose(back["mflops"], batch_costs(tiny, batch).mflops)
    write_table(frame.drop(columns=["acc1"]), path)
    with pytest.raises(TableError, match="missing column acc1"):
        read_records(path, tiny)
    bad = frame.astype(object)
    bad.loc[4, "acc1"] = "high"
    write_table(bad, path)
    with pytest.raises(TableError, match="line 6, column acc1: 'high' is not a number"):
        read_records(path, tiny)
