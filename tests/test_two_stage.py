"""``anas search --strategy two-stage``: HURRICANE-style coordinate search over the early and
the late stages."""


import numpy as np
import pytest
from synthetic import synthetic_acc1

from anas.predict.kinds.lightgbm import LightGBMOptions, LightGBMPredictor
from anas.search.problem import Band, SearchProblem
from anas.search.runner import search
from anas.search.strategies.two_stage import EARLY, LATE, _Search, stage_groups
from anas.space.arch import ArchBatch, sample_archs
from anas.space.cost import batch_costs
from anas.space.table_format import setting_columns


@pytest.fixture(scope="module")
def attentive_lightgbm(attentive):
    rng = np.random.default_rng(0)
    pool = sample_archs(attentive, 1000, rng)
    return LightGBMPredictor.fit(attentive, pool, synthetic_acc1(attentive, pool, rng),
                                 LightGBMOptions(n_estimators=100))


@pytest.mark.parametrize("space_name, split", [("tiny", 2), ("attentive", 4)])
def test_stage_groups_partition_the_genome(request, space_name, split):
    space = request.getfixturevalue(space_name)
    early, late = stage_groups(space)
    columns = setting_columns(space)
    assert sorted(np.concatenate([early, late]).tolist()) == list(range(len(columns)))  # every column once
    names = {"early": {columns[i] for i in early}, "late": {columns[i] for i in late}}
    n = space.num_stages
    assert {"resolution", "width_0"} <= names["early"] and f"width_{n + 1}" in names["late"]  # head width: late
    for stage in range(n):
        group = "early" if stage < split else "late"
        settings = {f"width_{stage + 1}", f"depth_{stage}", f"kernel_size_{stage}", f"expand_ratio_{stage}"}
        assert settings <= names[group], (stage, group)


def test_repair_with_a_mask_moves_only_masked_columns(attentive, attentive_linear):
    problem = SearchProblem(attentive, attentive_linear, Band(400, 600))
    early, late = stage_groups(attentive)
    rng = np.random.default_rng(0)
    genes = problem.genome.random(300, rng)
    outside = ~problem.flops.contains(problem.mflops(genes))
    assert outside.sum() > 100
    mask = np.zeros(problem.genome.length, dtype=bool)
    mask[late] = True
    repaired = problem.repair(genes, np.random.default_rng(1), movable=mask)
    assert np.array_equal(repaired[:, early], genes[:, early])
    assert (repaired[outside][:, late] != genes[outside][:, late]).any(axis=1).mean() > 0.9  # the late ones moved
    inside = problem.flops.contains(problem.mflops(repaired))
    assert inside[outside].sum() > 20  # some reach the band with the late settings alone ...
    everything = problem.repair(genes, np.random.default_rng(1))
    assert problem.flops.contains(problem.mflops(everything)).sum() > inside.sum()  # ... fewer than with all
    # the default (every column) is the unmasked repair, draw for draw
    assert np.array_equal(everything, problem.repair(genes, np.random.default_rng(1),
                                                     movable=np.ones(problem.genome.length, dtype=bool)))
    with pytest.raises(ValueError, match="movable"):
        problem.repair(genes, rng, movable=mask[:-1])


def _recording(problem):
    """Record every batch ``problem.evaluate`` scores."""
    batches = []
    evaluate = problem.evaluate

    def record(genes):
        batches.append(np.array(genes))
        return evaluate(genes)

    problem.evaluate = record
    return batches


@pytest.mark.parametrize("group", [LATE, EARLY])
def test_a_round_changes_only_its_group(attentive, attentive_linear, group):
    problem = SearchProblem(attentive, attentive_linear, Band(400, 600))
    groups = stage_groups(attentive)
    search = _Search(problem, 1000, np.random.default_rng(0), 8, groups)
    genes, rank = search.score(problem.sample_in_band(50, np.random.default_rng(0)))
    incumbent = genes[rank.argmax()]
    batches = _recording(problem)
    scored, scored_rank = search.round(incumbent, group, generations=3, generation=32)
    assert len(batches) == 3 and len(scored) == sum(len(b) for b in batches) > 60
    fixed, free = groups[1 - group], groups[group]
    for batch in batches:
        assert (batch[:, fixed] == incumbent[fixed]).all()  # the other group is the incumbent's
    assert len({tuple(row) for row in scored[:, free]}) == len(scored)  # distinct subnets, all new
    assert problem.flops.contains(problem.mflops(scored)).all()
    assert scored_rank.max() > rank.max()  # a round improves on the start


def test_every_round_changes_one_group_with_the_other_fixed_to_an_incumbent(attentive, attentive_linear):
    """End to end: after the start, each predictor call varies one group only (the late one
    first); the fixed group is that of a feasible subnet scored before (a lane's incumbent)."""
    problem = SearchProblem(attentive, attentive_linear, Band(400, 600))
    batches = _recording(problem)
    search(problem, "two-stage", 1500, 0)
    early, late = stage_groups(attentive)
    seen = batches[0]
    varied = []
    for batch in batches[1:]:
        groups = [g for g, fixed in ((LATE, early), (EARLY, late)) if (batch[:, fixed] == batch[0, fixed]).all()]
        assert len(groups) == 1, "a round changes exactly one group"
        fixed = early if groups[0] == LATE else late
        assert (seen[:, fixed] == batch[0, fixed]).all(axis=1).any()
        varied.append(groups[0])
        seen = np.concatenate([seen, batch])
    assert varied[0] == LATE and set(varied) == {LATE, EARLY}


@pytest.mark.parametrize("band, budget", [((400, 600), 8), ((400, 600), 9), ((400, 600), 100), ((400, 600), 1000),
                                          ((200, 225), 1000), ((700, 720), 1000)])
def test_budget_is_respected_and_results_are_in_band(attentive, attentive_linear, band, budget):
    problem = SearchProblem(attentive, attentive_linear, Band(*band))
    result = search(problem, "two-stage", budget, 0)
    assert budget * 0.95 <= problem.calls <= budget
    assert len(result.archive.genes) == problem.calls  # never the same subnet twice
    front = result.archive.mflops[result.front]
    assert ((front >= band[0]) & (front <= band[1])).all()
    assert result.archive.pred_acc1[result.best] == result.archive.pred_acc1[result.archive.feasible].max()


@pytest.mark.parametrize("budget", [8, 300])
def test_tiny_space_within_budget_and_band(tiny, tiny_linear, budget):
    problem = SearchProblem(tiny, tiny_linear, Band(1, 2))
    result = search(problem, "two-stage", budget, 0)
    assert problem.calls <= budget and len(result.archive.genes) == problem.calls
    assert ((result.archive.mflops[result.front] >= 1) & (result.archive.mflops[result.front] <= 2)).all()


def test_tiny_reaches_the_exhaustive_optimum(tiny, tiny_linear, tiny_everything):
    _, mflops, _, pred = tiny_everything
    optimum = pred[(mflops >= 1) & (mflops <= 2)].max()
    found = [search(SearchProblem(tiny, tiny_linear, Band(1, 2)), "two-stage", 2000, seed).archive for seed in range(3)]
    assert all(archive.pred_acc1[archive.feasible].max() >= optimum - 0.01 for archive in found)


def test_latency_band_incumbents_are_feasible(tiny, tiny_linear):
    """Latency is checked by problem.evaluate (a fake clock: MFLOPs as ms): infeasible subnets
    never make the front, and the search still finds many feasible ones."""
    problem = SearchProblem(tiny, tiny_linear, Band(1, 2), latency=Band(0, 1.4), latency_objective=True,
                            measure_latency=lambda arch: float(batch_costs(tiny, ArchBatch.from_archs([arch])).mflops[0]))
    result = search(problem, "two-stage", 300, 0)
    assert problem.calls <= 300
    assert (result.archive.latency_ms[result.front] <= 1.4).all()
    assert result.archive.feasible.sum() >= 20


def test_lightgbm_predictor_stays_inside_the_band(attentive, attentive_lightgbm):
    """As tests/test_search.py checks the other strategies."""
    for band, budget in (((400, 600), 1200), ((200, 225), 1000)):
        problem = SearchProblem(attentive, attentive_lightgbm, Band(*band))
        result = search(problem, "two-stage", budget, 1)
        assert problem.calls <= budget and result.archive.feasible.sum() >= 50
        front = result.archive.mflops[result.front]
        assert ((front >= band[0]) & (front <= band[1])).all()
        assert result.best == result.front[0]


def test_cli_runs_two_stage(run_cli, tiny_linear, tmp_path):
    from anas.predict.folder import save_predictor

    save_predictor(tiny_linear, tmp_path / "p")
    result = run_cli("search", "--flops", "1-2", "--predictor", tmp_path / "p", "--strategy", "two-stage",
                     "--budget", "300", "--out", tmp_path / "s", "--json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["strategy"] == "two-stage" and data["calls"] <= 300 and 1 <= data["mflops"] <= 2
