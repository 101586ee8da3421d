"""HURRICANE end to end: a latency table stands in for timing in the search, --verify
times the chosen subnets for real, and a reduced space trains."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_FAKE_RUN, assert_one_line_error, planted_table, train_tiny_run

from anas.latency.lookup_table import LatencyModel, read_latency_table, write_table
from anas.latency.reduce import reduce_space
from anas.predict.folder import save_predictor
from anas.predict.kinds.lightgbm import LightGBMOptions, LightGBMPredictor
from anas.space.arch import ArchBatch, arch_from_dict, sample_archs
from anas.space.cost import batch_costs
from anas.space.schema import load_space, write_space
from anas.space.table_format import frame_to_archs


@pytest.fixture(scope="module")
def run_and_predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hurricane")
    tiny = load_space("tiny")
    rng = np.random.default_rng(0)
    pool = sample_archs(tiny, 300, rng)
    save_predictor(LightGBMPredictor.fit(tiny, pool, batch_costs(tiny, pool).mflops * 10 + rng.normal(0, 0.5, 300),
                                         LightGBMOptions(n_estimators=50)), folder / "predictor")
    return train_tiny_run(folder / "run"), folder / "predictor"


def test_search_predicts_latency_from_the_table_and_verify_times_it(run_cli, run_and_predictor, tiny, tiny_table,
                                                                    tmp_path):
    run, predictor = run_and_predictor
    model = LatencyModel(read_latency_table(tiny_table), tiny)
    result = run_cli("search", "--flops", "0.5-3", "--latency", "0-1000", "--latency-table", tiny_table,
                     "--predictor", predictor, "--run", run, "--verify", "2", "--calib-batches", "1",
                     "--budget", "80", "--out", tmp_path / "s", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert len(data["verified"]) == 2
    front = pd.read_csv(tmp_path / "s" / "pareto.csv")
    np.testing.assert_allclose(front["latency_ms"], model.predict(frame_to_archs(tiny, front)))
    timed = front[front["measured_latency_ms"].notna()]
    assert len(timed) == 2 and (timed["measured_latency_ms"] > 0).all()
    assert sorted(row["latency_ms"] for row in data["verified"]) == pytest.approx(sorted(timed["latency_ms"]))
    assert sorted(row["measured_latency_ms"] for row in data["verified"]) == \
        pytest.approx(sorted(timed["measured_latency_ms"]))
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    arch = ArchBatch.from_archs([arch_from_dict(tiny, best)])
    assert best["measured_latency_ms"] > 0 and best["latency_ms"] == pytest.approx(model.predict(arch)[0])
    shown = run_cli("search", "--flops", "0.5-3", "--latency", "0-1000", "--latency-table", tiny_table,
                    "--predictor", predictor, "--budget", "40", "--out", tmp_path / "t")
    assert shown.code == 0 and "latency (ms)" in shown.stdout


def test_latency_band_bounds_the_predicted_latency(run_cli, run_and_predictor, tiny, tmp_path):
    _, predictor = run_and_predictor
    table = write_table(planted_table(tiny, slow=lambda layer: layer.kernel == 5), tmp_path / "table.json")
    model = LatencyModel(read_latency_table(table), tiny)
    spread = np.sort(model.predict(sample_archs(tiny, 200, np.random.default_rng(0))))
    low, high = spread[20], spread[100]
    result = run_cli("search", "--flops", "0.1-10", "--latency", f"{low:.4f}-{high:.4f}", "--latency-table", table,
                     "--predictor", predictor, "--budget", "80", "--out", tmp_path / "s", "--json")
    assert result.code == 0, result.stderr
    front = pd.read_csv(tmp_path / "s" / "pareto.csv")
    assert front["latency_ms"].between(float(f"{low:.4f}"), float(f"{high:.4f}")).all()


def test_search_refuses_mismatched_tables(run_cli, run_and_predictor, tiny_table):
    _, predictor = run_and_predictor
    search = ["search", "--flops", "0.5-3", "--predictor", predictor, "--budget", "20"]
    cases = [
        ([*search, "--latency-table", tiny_table], ["--latency-table goes with --latency"]),
        ([*search, "--latency", "0-9", "--latency-table", tiny_table, "--latency-predictor", predictor], ["give one"]),
        ([*search, "--latency", "0-9", "--latency-table", tiny_table, "--device", "ort-cpu"], ["on cpu, not ort-cpu"]),
        ([*search, "--latency", "0-9", "--latency-table", tiny_table, "--latency-batch", "8"], ["batch 1, not 8"]),
        ([*search, "--latency", "0-9", "--device", "tpu"], ["unknown --device 'tpu'"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli(*args), *fragments)


def test_a_reduced_space_trains(run_cli, tiny, tiny_table, tmp_path):
    reduction = reduce_space(read_latency_table(tiny_table), tiny, ratio=1.0)
    path = write_space(reduction.space, tmp_path / "reduced.yaml")
    options = {**TINY_FAKE_RUN, "space": str(path)}
    args = [item for key, value in options.items() for item in (f"--{key.replace('_', '-')}", value)]
    result = run_cli("train", *args, "--run-dir", tmp_path / "run", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["largest"]["arch"]["kernel_size"] == [max(s.kernel_sizes) for s in reduction.space.stages]
