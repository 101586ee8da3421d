"""The learned subnet distribution of FP-NAS / PARSEC (anas.space.distribution)."""

import itertools

import numpy as np
import pytest

from anas.errors import AnasError
from anas.space.arch import ArchBatch
from anas.space.cost import batch_costs
from anas.space.distribution import SubnetDistribution, adaptive_k


def _all_genes(space):
    sizes = [len(c) for c in space.column_choices()]
    return np.array(list(itertools.product(*(range(n) for n in sizes))), dtype=np.int64)


def _planted(space, genes):
    """A log-likelihood that favours some settings and penalizes size."""
    batch = ArchBatch.from_choice_index(space, genes)
    mflops = batch_costs(space, batch).mflops
    return 0.8 * genes[:, 1] + 0.5 * (genes[:, -1]) - 0.6 * mflops + 0.3 * (genes[:, 5] == 1)


def _randomized(space, seed=0, joint=False):
    dist = SubnetDistribution.factorized(space)
    rng = np.random.default_rng(seed)
    for factor in dist.factors:
        factor.logits = rng.normal(0, 0.7, len(factor.logits))
    return dist.joint() if joint else dist


@pytest.mark.parametrize("joint", [False, True])
def test_the_estimate_points_along_the_exact_gradient(tiny, joint):
    dist = _randomized(tiny, joint=joint)
    genes = _all_genes(tiny)  # tiny can be enumerated
    f = _planted(tiny, genes)
    p = np.exp(dist.log_prob(genes))
    assert p.sum() == pytest.approx(1.0)
    q = p * np.exp(f - f.max())
    q /= q.sum()
    exact = np.concatenate([np.bincount(factor.outcome_of(genes), weights=q, minlength=len(factor.logits))
                            - factor.probabilities() for factor in dist.factors])
    rng = np.random.default_rng(1)
    estimates = []
    for _ in range(50):
        drawn = dist.sample(512, rng)
        estimates.append(np.concatenate(dist.direction(drawn, _planted(tiny, drawn))))
    mean = np.mean(estimates, axis=0)
    cosine = mean @ exact / np.linalg.norm(mean) / np.linalg.norm(exact)
    assert cosine >= 0.95


def test_the_joint_form_starts_equal_to_the_factorized_one(tiny):
    dist = _randomized(tiny, seed=3)
    joint = dist.joint()
    genes = _all_genes(tiny)
    total_variation = 0.5 * np.abs(np.exp(dist.log_prob(genes)) - np.exp(joint.log_prob(genes))).sum()
    assert total_variation < 1e-9
    assert joint.entropy() == pytest.approx(dist.entropy())
    assert len(joint.factors) == 3 + len(tiny.stages)  # resolution, first conv and head widths, one per stage


def test_learning_concentrates_on_the_best_subnet(tiny):
    dist = SubnetDistribution.factorized(tiny)
    genes = _all_genes(tiny)
    f = _planted(tiny, genes)
    rng = np.random.default_rng(0)
    start = dist.entropy()
    for _ in range(300):
        drawn = dist.sample(64, rng)
        dist.update(drawn, 4 * _planted(tiny, drawn), lr=0.5)
    assert dist.entropy() < 0.5 * start
    best = genes[np.argmax(f)]
    assert (dist.mode()[0] == best).mean() >= 0.8


def test_adaptive_k_falls_with_the_entropy():
    assert adaptive_k(10.0, 2.0) == 20 and adaptive_k(0.1, 2.0) == 2 and adaptive_k(1.01, 1.0) == 2


def test_json_round_trip_and_refusals(tiny, cifar_space=None):
    dist = _randomized(tiny, joint=True)
    data = dist.to_dict()
    again = SubnetDistribution.from_dict(tiny, data, "d.json")
    genes = _all_genes(tiny)[:100]
    np.testing.assert_allclose(again.log_prob(genes), dist.log_prob(genes))
    assert data["factors"][0]["name"] == "resolution" and sum(data["factors"][0]["probabilities"]) == pytest.approx(1)
    data["factors"][1]["logits"] = [1.0]
    with pytest.raises(AnasError, match="finite logits"):
        SubnetDistribution.from_dict(tiny, data, "d.json")
    with pytest.raises(AnasError, match="not an anas distribution"):
        SubnetDistribution.from_dict(tiny, {"format": "x"}, "d.json")


def test_adaptive_k_draws_fewer_subnets_than_its_starting_k(tiny):
    rng = np.random.default_rng(0)
    dist = SubnetDistribution.factorized(tiny)
    k0, total = adaptive_k(dist.entropy(), 4.0), 0
    for _ in range(100):
        k = adaptive_k(dist.entropy(), 4.0)
        drawn = dist.sample(k, rng)
        total += k
        dist.update(drawn, 4 * _planted(tiny, drawn), lr=0.2)
    assert k < k0 and total < 100 * k0


def test_search_fpnas_learns_a_distribution_and_writes_it(run_cli, tmp_path, tiny):
    from anas.predict.folder import save_predictor
    from anas.predict.kinds.linear import LinearPredictor
    from anas.space.arch import sample_archs

    rng = np.random.default_rng(0)
    batch = sample_archs(tiny, 64, rng)
    genes = batch.choice_index(tiny)
    save_predictor(LinearPredictor.fit(tiny, batch, 80 + _planted(tiny, genes)), tmp_path / "pred")
    args = ["search", "--predictor", tmp_path / "pred", "--flops", "1-2", "--strategy", "fpnas", "--budget", "600",
            "--json"]
    first, second = run_cli(*args), run_cli(*args)
    assert first.code == 0, first.stderr
    assert first.json()["best"] == second.json()["best"] and first.json()["calls"] == 600  # deterministic, on budget
    path = tmp_path / "pred" / "search-1-2" / "distribution.json"
    learned = SubnetDistribution.from_dict(tiny, __import__("json").loads(path.read_text()), str(path))
    assert learned.form == "joint" and learned.entropy() < SubnetDistribution.factorized(tiny).entropy()
    result = run_cli("profile", "--space", "tiny", "--sample", "200", "--distribution", path,
                     "--out", tmp_path / "drawn.csv", "--json")
    assert result.code == 0, result.stderr
    import pandas as pd

    drawn = pd.read_csv(tmp_path / "drawn.csv")
    assert len(drawn) == 200 and drawn["mflops"].between(0.2, 3).all()
    uniform = SubnetDistribution.factorized(tiny).sample(200, np.random.default_rng(0))
    assert len({tuple(r) for r in drawn.iloc[:, :15].to_numpy()}) < len({tuple(r) for r in uniform})
