"""FOX-NAS's linear predictor: stage-level features, ridge with standard errors, the
explanation, other targets (a latency model) and its use in search."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from anas.predict.explain import coefficient_table, stage_effects
from anas.predict.folder import load_predictor, save_predictor
from anas.predict.kinds import PenaltyOptions, PredictorError
from anas.predict.kinds.linear import LinearPredictor, fit_ridge, linear_feature_names, linear_features
from anas.space.arch import sample_archs
from anas.space.cost import batch_costs
from anas.space.table_format import archs_to_frame, write_table


def _linear_target(space, batch, rng, noise=0.3):
    """A target that is linear in the stage features plus a little noise."""
    x = linear_features(space, batch)
    weights = np.linspace(-1.0, 1.0, x.shape[1]) / (1 + x.std(axis=0))
    return 70 + (x - x.mean(axis=0)) @ weights + rng.normal(0, noise, len(batch)), weights


def _records_file(space, path, n, seed=0, extra=None):
    rng = np.random.default_rng(seed)
    batch = sample_archs(space, n, rng)
    frame = archs_to_frame(space, batch, batch_costs(space, batch))
    frame["acc1"] = np.clip(60 + 5 * np.log(frame["mflops"]) + 2 * batch.depth.sum(axis=1)
                            + rng.normal(0, 0.5, n), 0, 100)
    for column, values in (extra or {}).items():
        frame[column] = values(frame)
    write_table(frame, path)
    return frame


def test_features_follow_their_names(tiny):
    batch = sample_archs(tiny, 5, np.random.default_rng(0))
    x = linear_features(tiny, batch)
    names = linear_feature_names(tiny)
    assert x.shape == (5, len(names)) == (5, 6 * 3 + 3 - 2)  # mb1 has one expand ratio: no expand terms
    assert "mb1.expand" not in names and "mb1.depth_x_expand" not in names
    column = dict(zip(names, x[2]))
    arch = batch[2]
    assert column["mb2.depth"] == arch.depth[1] and column["mb2.width"] == arch.width[2]
    assert column["mb3.depth_x_kernel"] == arch.depth[2] * arch.kernel_size[2]
    assert column["mb2.depth_x_expand"] == arch.depth[1] * arch.expand_ratio[1]
    assert column["resolution"] == arch.resolution and column["head.width"] == arch.width[-1]


def test_without_penalty_it_is_least_squares_with_its_textbook_standard_errors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)) * [1, 3, 0.5, 2] + [0, 5, 1, -2]
    y = 3 + x @ [0.5, -1.0, 2.0, 0.0] + rng.normal(0, 0.1, 200)
    coefficients, intercept, covariance, variance = fit_ridge(x, y, 0.0)
    design = np.column_stack([np.ones(200), x])
    expected, *_ = np.linalg.lstsq(design, y, rcond=None)
    np.testing.assert_allclose([intercept, *coefficients], expected, atol=1e-9)
    residual = y - design @ expected
    sigma2 = residual @ residual / (200 - 5)
    textbook = sigma2 * np.linalg.inv(design.T @ design)[1:, 1:]
    assert variance == pytest.approx(sigma2)
    np.testing.assert_allclose(covariance, textbook, rtol=1e-6)


def test_fits_a_linear_target_and_ranks_held_out_subnets(tiny):
    rng = np.random.default_rng(2)
    train, test = sample_archs(tiny, 200, rng), sample_archs(tiny, 100, rng)
    y_train, _ = _linear_target(tiny, train, rng)
    predictor = LinearPredictor.fit(tiny, train, y_train, PenaltyOptions(reg_lambda=0.1))
    y_test, _ = _linear_target(tiny, test, rng, noise=0.0)
    predicted = predictor.predict(test)
    assert np.corrcoef(predicted, y_test)[0, 1] > 0.98
    assert predictor.standard_errors().shape == (len(linear_feature_names(tiny)),)


def test_folder_round_trip_and_damage(tiny, tmp_path):
    rng = np.random.default_rng(3)
    batch = sample_archs(tiny, 64, rng)
    predictor = LinearPredictor.fit(tiny, batch, _linear_target(tiny, batch, rng)[0])
    save_predictor(predictor, tmp_path)
    loaded = load_predictor(tmp_path)
    np.testing.assert_allclose(loaded.predict(batch), predictor.predict(batch))
    sidecar = json.loads((tmp_path / "predictor.json").read_text())
    sidecar["linear"]["coefficients"] = sidecar["linear"]["coefficients"][:-1]
    (tmp_path / "predictor.json").write_text(json.dumps(sidecar))
    with pytest.raises(PredictorError, match="features"):
        load_predictor(tmp_path)


def test_effects_combine_the_interaction_terms(tiny):
    rng = np.random.default_rng(4)
    batch = sample_archs(tiny, 64, rng)
    predictor = LinearPredictor.fit(tiny, batch, _linear_target(tiny, batch, rng)[0])
    effects = stage_effects(predictor).set_index(["stage", "effect"])
    beta = dict(zip(linear_feature_names(tiny), predictor.coefficients))
    mean = dict(zip(linear_feature_names(tiny), predictor.feature_means))
    block = beta["mb2.depth"] + beta["mb2.depth_x_expand"] * mean["mb2.expand"] + \
        beta["mb2.depth_x_kernel"] * mean["mb2.kernel"]
    assert effects.loc[("mb2", "one more block"), "value"] == pytest.approx(block)
    block = beta["mb1.depth"] + beta["mb1.depth_x_kernel"] * mean["mb1.kernel"]  # expand fixed at 1
    assert effects.loc[("mb1", "one more block"), "value"] == pytest.approx(block)
    kernel = 2 * (beta["mb3.kernel"] + beta["mb3.depth_x_kernel"] * mean["mb3.depth"])
    assert effects.loc[("mb3", "larger kernel"), "value"] == pytest.approx(kernel)
    assert ("mb1", "one more expand step") not in effects.index  # mb1 has one expand ratio
    assert (effects["standard_error"] > 0).all()
    table = coefficient_table(predictor)
    assert table["feature"].iloc[0] == "intercept" and len(table) == len(beta) + 1


def test_predict_fit_linear_with_explain(run_cli, tmp_path, tiny):
    _records_file(tiny, tmp_path / "records.csv", 80)
    result = run_cli("predict-fit", "--kind", "linear", "--records", tmp_path / "records.csv", "--space", "tiny",
                     "--explain", "--out", tmp_path / "pred", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["kind"] == "linear" and report["target"] == "acc1" and report["kendall_tau"] > 0.5
    coefficients = pd.read_csv(tmp_path / "pred" / "coefficients.csv")
    assert list(coefficients.columns) == ["feature", "coefficient", "standard_error"]
    assert (tmp_path / "pred" / "explain.png").stat().st_size > 0
    assert set(report["paths"]) >= {"coefficients", "effects", "explain_plot"}


def test_a_latency_model_stands_in_for_timing_in_search(run_cli, tmp_path, tiny):
    latency = {"latency_ms": lambda f: 0.5 + 0.8 * f["mflops"] + 0.05 * f["depth_2"]}
    _records_file(tiny, tmp_path / "records.csv", 80, extra=latency)
    assert run_cli("predict-fit", "--kind", "linear", "--records", tmp_path / "records.csv", "--space", "tiny",
                   "--out", tmp_path / "acc", "-q").code == 0
    result = run_cli("predict-fit", "--kind", "linear", "--records", tmp_path / "records.csv", "--space", "tiny",
                     "--target", "latency_ms", "--out", tmp_path / "lat", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["target"] == "latency_ms" and result.json()["kendall_tau"] > 0.7
    result = run_cli("search", "--predictor", tmp_path / "acc", "--flops", "0.5-2.5", "--latency", "0-1.6",
                     "--latency-predictor", tmp_path / "lat", "--budget", "300", "--json")
    assert result.code == 0, result.stderr
    front = pd.read_csv(tmp_path / "acc" / "search-0.5-2.5" / "pareto.csv")
    assert front["latency_ms"].le(1.6).all() and front["latency_ms"].notna().all()
    refused = run_cli("search", "--predictor", tmp_path / "lat", "--flops", "0.5-2.5")
    assert_one_line_error(refused, "predicts latency_ms, not accuracy", "--latency-predictor")
    refused = run_cli("search", "--predictor", tmp_path / "acc", "--flops", "0.5-2.5", "--latency-predictor",
                      tmp_path / "lat")
    assert_one_line_error(refused, "--latency-predictor goes with --latency")


def test_profile_sample_with_latency_writes_a_latency_column(run_cli, tmp_path):
    result = run_cli("profile", "--space", "tiny", "--sample", "3", "--latency", "--runs", "1", "--warmup", "0",
                     "--out", tmp_path / "lat.csv", "--json")
    assert result.code == 0, result.stderr
    frame = pd.read_csv(tmp_path / "lat.csv")
    assert len(frame) == 3 and (frame["latency_ms"] > 0).all()


def test_bad_input_is_one_line(run_cli, tmp_path, tiny):
    _records_file(tiny, tmp_path / "records.csv", 40)
    records = ["--records", tmp_path / "records.csv", "--space", "tiny"]
    assert_one_line_error(run_cli("predict-fit", "--kind", "linear", *records, "--target", "latency_ms"),
                          "missing column latency_ms")
    assert_one_line_error(run_cli("predict-fit", "--kind", "lightgbm", *records, "--explain"),
                          "--explain needs an explainable kind (linear)")
    assert_one_line_error(run_cli("predict-fit", "--kind", "linear", "--run", tmp_path, "--target", "latency_ms"),
                          "a run's records have no column 'latency_ms'")
