from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anas.errors import AnasError
from anas.nn.supernet import Supernet
from anas.space.arch import smallest_arch
from anas.space.cost import arch_costs
from anas.train.config import TrainConfig
from anas.train.estimators import EstimatorContext, build_estimator
from anas.train.samplers import SAMPLERS, SamplerContext, build_sampler
from anas.train.samplers.attentive import AttentiveOptions, BestUpSampler, FlopsPrior, WorstUpSampler
from anas.train.samplers.uniform import UniformSampler


def _context(space, estimator=None, seed: int = 0, prior_samples: int = 5000) -> SamplerContext:
    config = TrainConfig(space=space.name, seed=seed)
    return SamplerContext(space, config, space.num_classes, lambda: estimator,
                          options=AttentiveOptions(prior_samples=prior_samples))


@pytest.mark.parametrize("text, cls, params", [
    ("uniform", UniformSampler, {}), ("bestup-k3", BestUpSampler, {"k": 3}), ("WorstUp-k50", WorstUpSampler, {"k": 50}),
])
def test_sampler_names_resolve_with_their_parameter(text, cls, params):
    assert SAMPLERS.resolve(text) == (cls, params)


@pytest.mark.parametrize("text", ["best", "bestup", "bestup-k0", "bestup-3", "worstup-kx", "random"])
def test_malformed_sampler_names_list_the_known_ones(text):
    with pytest.raises(AnasError, match=r"unknown sampler .*: use .*bestup-kN.*uniform"):
        SAMPLERS.resolve(text)


def test_prior_matches_the_paper_bins(attentive):
    prior = FlopsPrior(attentive, step=25, pool_size=100_000, seed=0)
    assert abs(prior.probs.sum() - 1) < 1e-9
    assert prior.bins.min() * 25 >= 200 and prior.bins.max() * 25 <= 1950
    assert abs(FlopsPrior.default_step(np.array([203.4, 1939.3])) - 24.8) < 0.1


def test_conditional_sampling_hits_the_bin_even_next_to_the_smallest_subnet(attentive):
    prior = FlopsPrior(attentive, step=25, pool_size=20_000, seed=0)
    rng = np.random.default_rng(0)
    smallest_bin = int(prior.bin_of(arch_costs(attentive, smallest_arch(attentive))[0]))
    for target in [smallest_bin, int(prior.bins[len(prior.bins) // 2]), int(prior.bins.max())]:
        archs = prior.draw_in_bin(rng, target, k=3, max_rounds=2)  # bounded work: 2 rounds, then the pool
        assert len(archs) == 3
        for arch in archs:
            assert int(prior.bin_of(arch_costs(attentive, arch)[0])) == target


class FixedScores:
    """An estimator whose scores are known: the candidate's first-stage width plus depth."""

    def __init__(self):
        self.seen = []

    def score(self, archs, images, labels):
        self.seen.append(list(archs))
        return np.array([a.width[1] * 10 + sum(a.depth) for a in archs], dtype=float)


@pytest.mark.parametrize("name, pick", [("bestup-k5", np.argmax), ("worstup-k5", np.argmin)])
def test_bestup_and_worstup_train_the_best_and_the_worst_scored_candidate(tiny, name, pick):
    estimator = FixedScores()
    sampler = build_sampler(name, _context(tiny, estimator, seed=1))
    for _ in range(20):
        chosen = sampler.sample(None, None)
        candidates = estimator.seen[-1]
        assert len(candidates) == 5
        scores = estimator.score(candidates, None, None)
        assert chosen == candidates[int(pick(scores))]


def _losses(supernet, archs, images, labels) -> list[float]:
    """Each subnet's cross-entropy on the batch, measured independently of the estimator."""
    losses = []
    for arch in archs:
        supernet.set_active(arch)
        with torch.no_grad(), supernet.frozen_bn_stats():
            losses.append(F.cross_entropy(supernet(images), labels).item())
    return losses


@pytest.mark.parametrize("name, pick", [("bestup-k4", np.argmin), ("worstup-k4", np.argmax)])
def test_bestup_trains_the_lowest_loss_candidate_over_many_draws(tiny, name, pick):
    """With the minibatch-loss estimator, BestUp's subnet is the candidate of least loss
    on the step's batch, and WorstUp's the one of most loss, draw after draw."""
    torch.manual_seed(0)
    supernet = Supernet(tiny).train()
    context = _context(tiny, seed=3)
    estimator = build_estimator("loss", EstimatorContext(tiny, context.config, supernet, lambda t: t,
                                                         nullcontext))
    context.make_estimator = lambda: estimator
    sampler = build_sampler(name, context)
    drawn = []
    draw_in_bin = sampler.prior.draw_in_bin
    sampler.prior.draw_in_bin = lambda *args, **kwargs: drawn.append(draw_in_bin(*args, **kwargs)) or drawn[-1]
    gen = torch.Generator().manual_seed(0)
    distinct_picks = 0
    for _ in range(12):
        images, labels = torch.randn(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        chosen = sampler.sample(images, labels)
        losses = _losses(supernet, drawn[-1], images, labels)
        assert chosen == drawn[-1][int(pick(losses))]
        distinct_picks += int(pick(losses)) != 0
    assert distinct_picks > 0  # the pick is not always the first candidate


def test_loss_estimator_leaves_bn_statistics_alone(tiny):
    torch.manual_seed(0)
    supernet = Supernet(tiny).train()
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    prior = FlopsPrior(tiny, pool_size=5000)
    archs = prior.draw_in_bin(np.random.default_rng(0), int(prior.bins[3]), 4)
    running = [m.running_mean.clone() for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    estimator = build_estimator("loss", EstimatorContext(tiny, TrainConfig(), supernet, lambda t: t,
                                                         nullcontext))
    scores = estimator.score(archs, images, labels)
    after = [m.running_mean for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(running, after))
    assert np.allclose(-scores, _losses(supernet, archs, images, labels), atol=1e-5)


def test_uniform_sampler_is_seeded_and_resumes(tiny):
    first = build_sampler("uniform", _context(tiny, seed=4))
    second = build_sampler("uniform", _context(tiny, seed=4))
    assert [first.sample(None, None) for _ in range(5)] == [second.sample(None, None) for _ in range(5)]
    state = first.state_dict()
    ahead = [first.sample(None, None) for _ in range(3)]
    second.load_state_dict(state)
    assert [second.sample(None, None) for _ in range(3)] == ahead
