import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error
from synthetic import synthetic_acc1

from anas.errors import AnasError
from anas.predict.folder import save_predictor
from anas.predict.kinds.lightgbm import LightGBMOptions
from anas.predict.kinds.lightgbm import LightGBMPredictor as Predictor
from anas.search.outputs import pareto_mask
from anas.search.problem import Band, Genome, SearchProblem, parse_band
from anas.search.runner import search
from anas.space.arch import ArchBatch, parse_arch, sample_archs
from anas.space.cost import batch_costs, index_costs
from anas.space.table_format import setting_columns


@pytest.fixture(scope="module")
def attentive_predictor(tmp_path_factory):
    from anas.space.schema import load_space

    space = load_space("attentive-nas")
    rng = np.random.default_rng(0)
    pool = sample_archs(space, 1000, rng)
    predictor = Predictor.fit(space, pool, synthetic_acc1(space, pool, rng), LightGBMOptions(n_estimators=400))
    folder = tmp_path_factory.mktemp("predictor")
    save_predictor(predictor, folder)
    return predictor, folder


def test_parse_band():
    assert parse_band("400-600", "--flops") == Band(400, 600)
    assert parse_band(" 200.5 - 225 ", "--flops") == Band(200.5, 225)
    for text, message in [("400", "not a band"), ("600-400", "above HI"), ("a-b", "not a band"), ("-5-3", "not a band")]:
        with pytest.raises(AnasError, match=message):
            parse_band(text, "--flops")


def test_genome_round_trip_and_costs(attentive):
    genome = Genome(attentive)
    batch = sample_archs(attentive, 200, np.random.default_rng(0))
    genes = genome.encode(batch)
    assert list(genome.decode(genes)) == list(batch)
    assert np.array_equal(index_costs(attentive, genes).macs, batch_costs(attentive, batch).macs)
    assert len(genome.unique(np.concatenate([genes, genes]))) == 200


def test_pareto_mask():
    objectives = np.array([[1, 1], [2, 2], [0, 3], [3, 0], [1, 1.5]])
    assert pareto_mask(objectives).tolist() == [True, False, True, True, False]


def test_narrow_band_next_to_the_smallest_subnet_is_searched_within_the_budget(attentive, attentive_predictor):
    """1 subnet in about 10^5 falls in 200-225 MFLOPs: band sampling and repair still find
    many, and the strategies stop at their budget (no rejection loop)."""
    predictor, _ = attentive_predictor
    for strategy in ("evolution", "random", "nsga2"):
        problem = SearchProblem(attentive, predictor, Band(200, 225))
        result = search(problem, strategy, budget=1000, seed=1)
        assert problem.calls <= 1000 + 250  # NSGA-II may finish its last generation (of 1000 // 4)
        assert result.archive.feasible.sum() >= 50
        mflops = result.archive.mflops[result.front]
        assert ((mflops >= 200) & (mflops <= 225)).all()


@pytest.mark.parametrize("model, band", [("a4", (430, 460)), ("a1", (270, 290))])
def test_search_beats_the_published_model_in_its_band(attentive, attentive_predictor, model, band):
    predictor, _ = attentive_predictor
    published = parse_arch(attentive, model)
    target = predictor.predict(ArchBatch.from_archs([published]))[0]
    result = search(SearchProblem(attentive, predictor, Band(*band)), "nsga2", budget=2000, seed=0)
    best = result.arch(result.best)
    mflops = batch_costs(attentive, ArchBatch.from_archs([best])).mflops[0]
    assert band[0] <= mflops <= band[1]
    assert result.archive.pred_acc1[result.best] >= target


def test_params_bound(attentive, attentive_predictor):
    predictor, _ = attentive_predictor
    result = search(SearchProblem(attentive, predictor, Band(400, 700), params=Band(0, 11)), "evolution", 1000, 0)
    assert (result.archive.params_m[result.front] <= 11).all()


class CountingPredictor:
    """Counts the subnets it is asked to score."""

    def __init__(self, predictor):
        self.inner, self.scored = predictor, 0

    def predict(self, batch):
        self.scored += len(batch)
        return self.inner.predict(batch)


def test_infeasible_bands_are_refused_at_once(attentive, attentive_predictor):
    """Before any subnet is scored."""
    predictor = CountingPredictor(attentive_predictor[0])
    with pytest.raises(AnasError, match=r"its subnets span 203.4-1939.3 MFLOPs"):
        SearchProblem(attentive, predictor, Band(100, 200))
    with pytest.raises(AnasError, match="its subnets span"):
        SearchProblem(attentive, predictor, Band(2000, 3000))
    with pytest.raises(AnasError, match="params"):
        SearchProblem(attentive, predictor, Band(300, 400), params=Band(0, 1))
    assert predictor.scored == 0


def test_cli_end_to_end_with_latency_and_outputs(run_cli, tmp_path):
    from anas.space.schema import load_space

    tiny = load_space("tiny")
    rng = np.random.default_rng(0)
    pool = sample_archs(tiny, 300, rng)
    save_predictor(Predictor.fit(tiny, pool, batch_costs(tiny, pool).mflops * 10 + rng.normal(0, 0.5, 300),
                                 LightGBMOptions(n_estimators=100)), tmp_path / "p")
    result = run_cli("search", "--flops", "1-2", "--predictor", tmp_path / "p", "--latency", "0-1000",
                     "--latency-runs", "2", "--budget", "60", "--strategy", "evolution", "--out", tmp_path / "s", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert 1 <= data["mflops"] <= 2 and set(data["paths"]) == {"pareto_csv", "pareto_png", "best_json"}
    front = pd.read_csv(tmp_path / "s" / "pareto.csv")
    assert list(front.columns[: len(setting_columns(tiny))]) == setting_columns(tiny)
    assert {"pred_acc1", "latency_ms", "mflops"} <= set(front.columns)
    best = json.loads((tmp_path / "s" / "best.json").read_text())
    profiled = run_cli("profile", "--space", "tiny", "--arch", tmp_path / "s" / "best.json", "--json").json()
    assert profiled["mflops"] == pytest.approx(best["mflops"])


def test_cli_bad_inputs(run_cli, attentive_predictor, tmp_path, monkeypatch):
    _, folder = attentive_predictor
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)  # no ./runs here
    cases = [
        (["--flops", "400", "--predictor", folder], ["not a band"]),
        (["--flops", "600-400", "--predictor", folder], ["above HI"]),
        (["--flops", "50-100", "--predictor", folder], ["its subnets span 203.4-1939.3"]),
        (["--flops", "400-600", "--predictor", tmp_path / "missing"], ["does not exist"]),
        (["--flops", "400-600", "--predictor", tmp_path / "empty"], ["has no predictor.json"]),
        (["--flops", "400-600", "--predictor", folder, "--verify", "3"], ["holds a supernet checkpoint: run `anas train` first"]),
        (["--flops", "400-600"], ["no run folder under runs/ holds a predictor: run `anas predict-fit` first"]),
        (["--flops", "400-600", "--predictor", folder, "--calib-batches", "-1", "--verify", "1"], ["--calib-batches"]),
        (["--flops", "400-600", "--predictor", folder, "--strategy", "annealing"], ["unknown strategy"]),
        (["--flops", "400-600", "--predictor", folder, "--run", tmp_path / "empty"], ["has no checkpoint"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli("search", *args), *fragments)


def test_predictor_of_another_space_than_the_run(run_cli, attentive_predictor, tmp_path):
    from anas.train.loop import start_training

    _, folder = attentive_predictor
    start_training({"space": "tiny", "data": "fake", "epochs": 1, "batch_size": 32, "calib_batches": 1,
                    "sampler": "uniform", "run_dir": str(tmp_path / "run")}, progress=False)
    assert_one_line_error(run_cli("search", "--flops", "400-600", "--predictor", folder, "--run", tmp_path / "run",
                                  "--verify", "2"), "fitted on space attentive-nas", "of space tiny")


@pytest.mark.slow
def test_train_predict_fit_search_verify_end_to_end(run_cli, tmp_path):
    """The user's journey on the embedded digits: train, evaluate and fit, search, verify."""
    run = tmp_path / "run"
    assert run_cli("train", "--epochs", "1", "--lr", "0.4", "--sampler", "uniform", "--calib-batches", "2",
                   "--run-dir", run, "--quiet").code == 0
    assert run_cli("predict-fit", "--run", run, "--samples", "12", "--calib-batches", "1", "--quiet").code == 0
    result = run_cli("search", "--flops", "0.5-2", "--predictor", run, "--run", run, "--verify", "3",
                     "--calib-batches", "1", "--budget", "300", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert len(data["verified"]) == 3 and 0 <= data["acc1"] <= 100
    assert data["acc1"] == max(v["acc1"] for v in data["verified"])  # best.json chosen by measured accuracy
    front = pd.read_csv(data["paths"]["pareto_csv"])
    assert front["acc1"].notna().sum() == 3
    best = json.loads(open(data["paths"]["best_json"]).read())
    assert best["acc1"] == data["acc1"] and 0.5 <= best["mflops"] <= 2
