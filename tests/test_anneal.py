"""``anas search --strategy anneal``: FOX-NAS's simulated annealing, rescaled to the budget."""


import numpy as np
import pytest

from anas.predict.kinds import Predictor
from anas.search.problem import Band, SearchProblem
from anas.search.runner import search
from anas.search.strategies.anneal import Schedule, tolerance_for
from anas.space.arch import ArchBatch
from anas.space.cost import batch_costs


def test_tiny_reaches_the_exhaustive_optimum_of_the_linear_predictor(tiny, tiny_linear, tiny_everything):
    _, mflops, _, pred = tiny_everything
    inside = (mflops >= 1) & (mflops <= 2)
    optimum = pred[inside].max()
    found = []
    for seed in range(5):
        problem = SearchProblem(tiny, tiny_linear, Band(1, 2))
        result = search(problem, "anneal", 5632, seed)
        assert problem.calls <= 5632
        assert 1 <= result.archive.mflops[result.best] <= 2
        found.append(result.archive.pred_acc1[result.best])
    assert sum(optimum - value <= 0.01 for value in found) >= 4, (optimum, found)


@pytest.mark.parametrize("band, budget", [((400, 600), 8), ((400, 600), 100), ((400, 600), 1000), ((200, 225), 1000),
                                          ((700, 720), 1000)])
def test_budget_is_respected_and_spent(attentive, attentive_linear, band, budget):
    problem = SearchProblem(attentive, attentive_linear, Band(*band))
    result = search(problem, "anneal", budget, 0)
    assert budget * 0.95 <= problem.calls <= budget
    assert len(result.archive.genes) == problem.calls  # one call per distinct subnet
    front = result.archive.mflops[result.front]
    assert ((front >= band[0]) & (front <= band[1])).all()


def test_params_band_on_tiny_finds_the_exhaustive_optimum(tiny, tiny_linear, tiny_everything):
    _, mflops, params, pred = tiny_everything
    lo, hi = np.quantile(params, [0.2, 0.5])
    inside = (mflops >= 1) & (mflops <= 2) & (params >= lo) & (params <= hi)
    result = search(SearchProblem(tiny, tiny_linear, Band(1, 2), params=Band(lo, hi)), "anneal", 2000, 0)
    assert lo <= result.archive.params_m[result.best] <= hi
    assert result.archive.pred_acc1[result.best] >= pred[inside].max() - 0.01


def test_latency_band_results_are_never_accepted_when_infeasible(tiny, tiny_linear):
    """Latency is checked by problem.evaluate; a fake clock (MFLOPs as ms) stands in for timing."""
    timed = []

    def fake_latency(arch):
        value = float(batch_costs(tiny, ArchBatch.from_archs([arch])).mflops[0])
        timed.append(value)
        return value

    problem = SearchProblem(tiny, tiny_linear, Band(1, 2), latency=Band(0, 1.4), latency_objective=True,
                            measure_latency=fake_latency)
    result = search(problem, "anneal", 300, 0)
    assert problem.calls <= 300 and len(timed) == problem.calls
    assert (result.archive.latency_ms[result.front] <= 1.4).all()
    assert result.archive.feasible.sum() >= 20


class Indicator(Predictor):
    """A score that is not an accuracy (like the bn kind's): small magnitudes, no "(%)"."""

    score_label = "BN indicator"

    def __init__(self, inner):
        super().__init__(inner.space, inner.num_classes)
        self.inner = inner

    def predict(self, batch):
        return (self.inner.predict(batch) - 80.0) * 1e-3


def test_scores_that_are_not_accuracies_get_a_relative_tolerance(tiny, tiny_linear, tiny_everything):
    assert tolerance_for(81.0, percent=True) == pytest.approx(0.1)
    assert tolerance_for(-0.02, percent=False) == pytest.approx(2e-5)
    _, mflops, _, pred = tiny_everything
    inside = (mflops >= 1) & (mflops <= 2)
    problem = SearchProblem(tiny, Indicator(tiny_linear), Band(1, 2))
    result = search(problem, "anneal", 2000, 0)
    assert problem.calls <= 2000
    assert result.archive.pred_acc1[result.best] == pytest.approx((pred[inside].max() - 80.0) * 1e-3)


def test_schedule_is_the_published_one_scaled_to_the_share():
    default = Schedule(5632 / 3)
    assert (default.tolerance_after, default.stop_after, default.tolerance_until) == (63, 626, 1252)
    assert [default.step(i) for i in (0, 125, 126, 251, 376, 5000)] == [8, 8, 7, 6, 5, 5]
    assert default.batch == 15 and default.start_pool == 117
    published = Schedule(15_000)  # a share of one published walk: the published counts
    assert (published.tolerance_after, published.stop_after, published.tolerance_until) == (500, 5000, 10_000)
    assert [published.step(i) for i in (999, 1000, 2000, 3000)] == [8, 7, 6, 5]
    small = Schedule(8 / 3)
    assert small.batch == 1 and small.tolerance_after >= 1 and small.stop_after > small.tolerance_after


def test_cli_lists_and_runs_anneal(run_cli, tiny, tiny_linear, tmp_path):
    from anas.predict.folder import save_predictor

    save_predictor(tiny_linear, tmp_path / "p")
    result = run_cli("search", "--flops", "1-2", "--predictor", tmp_path / "p", "--strategy", "anneal",
                     "--budget", "300", "--out", tmp_path / "s", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["strategy"] == "anneal" and data["calls"] <= 300 and 1 <= data["mflops"] <= 2
