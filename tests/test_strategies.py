"""What every registered search strategy promises, checked once for all of them: it stays
inside the bands it is given and within its budget, the best subnet is the archive's best
feasible one, the same seed gives the same archive and another seed another, and a band
that holds few subnets ends the search instead of looping."""

import numpy as np
import pytest

from anas.search.problem import Band, SearchProblem
from anas.search.runner import search
from anas.search.strategies import STRATEGIES

BUILT_IN = ["anneal", "evolution", "fpnas", "nsga2", "random", "two-stage"]
OVERSHOOT = {"nsga2": 0.25}  # pymoo completes its last generation: one population, at most budget / 4
SKIPS_KNOWN = {"anneal", "two-stage"}  # never send a subnet to the predictor twice


def test_the_built_in_strategies_are_registered():
    assert set(BUILT_IN) <= set(STRATEGIES.names())


@pytest.mark.parametrize("strategy", BUILT_IN)
def test_inside_the_bands_and_the_budget(attentive, attentive_linear, strategy):
    budget = 600
    problem = SearchProblem(attentive, attentive_linear, Band(400, 600), params=Band(0, 11))
    result = search(problem, strategy, budget, seed=0)
    assert budget * 0.5 <= problem.calls <= budget * (1 + OVERSHOOT.get(strategy, 0))
    archive = result.archive
    assert archive.feasible.sum() >= 1 and len(result.front) >= 1
    front = result.front
    assert ((archive.mflops[front] >= 400) & (archive.mflops[front] <= 600)).all()
    assert (archive.params_m[front] <= 11).all()
    assert result.best == front[0]
    assert archive.pred_acc1[result.best] == archive.pred_acc1[archive.feasible].max()
    assert len(np.unique(problem.genome.keys(archive.genes))) == len(archive.genes)  # each subnet scored once


@pytest.mark.parametrize("strategy", BUILT_IN)
def test_the_same_seed_gives_the_same_archive(tiny, tiny_linear, strategy):
    def archive(seed):
        problem = SearchProblem(tiny, tiny_linear, Band(1, 2))
        search(problem, strategy, 300, seed)
        return problem.archive()

    first, again, other = archive(3), archive(3), archive(4)
    assert np.array_equal(first.genes, again.genes) and np.array_equal(first.pred_acc1, again.pred_acc1)
    assert not np.array_equal(first.genes, other.genes)


@pytest.mark.parametrize("strategy", BUILT_IN)
def test_a_band_with_few_subnets_is_searched_to_its_best(tiny, tiny_linear, tiny_everything, strategy):
    """A band of about 40 subnets and a budget of 2000: the search ends (no endless loop)
    and every strategy finds the band's best subnet."""
    _, mflops, _, pred = tiny_everything
    lo, hi = float(np.sort(mflops)[20]), float(np.sort(mflops)[60])
    inside = (mflops >= lo) & (mflops <= hi)
    problem = SearchProblem(tiny, tiny_linear, Band(lo, hi))
    result = search(problem, strategy, 2000, 0)
    assert problem.calls <= 2000 * (1 + OVERSHOOT.get(strategy, 0))
    if strategy in SKIPS_KNOWN:  # they stop once the band holds no unscored subnet they can reach
        assert problem.calls <= inside.sum()
    assert result.archive.pred_acc1[result.best] == pytest.approx(pred[inside].max())
