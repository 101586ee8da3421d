import time

import numpy as np
import pytest
import torch

from anas.space.arch import smallest_arch
from anas.space.cost import arch_costs
from anas.errors import AnasError
from anas.train.sampler import FlopsPrior, LossEstimator, SamplerSpec, SubnetSampler, parse_sampler
from anas.nn.supernet import Supernet


@pytest.mark.parametrize("text, spec", [
    ("uniform", SamplerSpec("uniform")), ("bestup-k3", SamplerSpec("bestup", 3)),
    ("WorstUp-k50", SamplerSpec("worstup", 50)),
])
def test_parse_sampler(text, spec):
    assert parse_sampler(text) == spec


@pytest.mark.parametrize("text", ["best", "bestup", "bestup-k0", "bestup-3", "worstup-kx", "random"])
def test_malformed_sampler(text):
    with pytest.raises(AnasError, match="unknown sampler"):
        parse_sampler(text)


def test_prior_is_built_in_about_a_second_and_matches_the_paper_bins(attentive):
    start = time.perf_counter()
    prior = FlopsPrior(attentive, step=25, pool_size=100_000, seed=0)
    assert time.perf_counter() - start < 3.0
    assert abs(prior.probs.sum() - 1) < 1e-9
    assert prior.bins.min() * 25 >= 200 and prior.bins.max() * 25 <= 1950
    assert abs(FlopsPrior.default_step(np.array([203.4, 1939.3])) - 24.8) < 0.1


def test_conditional_sampling_hits_the_bin_even_next_to_the_smallest_subnet(attentive):
    prior = FlopsPrior(attentive, step=25, pool_size=20_000, seed=0)
    rng = np.random.default_rng(0)
    smallest_bin = int(prior.bin_of(arch_costs(attentive, smallest_arch(attentive))[0]))
    for target in [smallest_bin, int(prior.bins[len(prior.bins) // 2]), int(prior.bins.max())]:
        start = time.perf_counter()
        archs = prior.draw_in_bin(rng, target, k=3)
        assert time.perf_counter() - start < 1.0
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


@pytest.mark.parametrize("kind, pick", [("bestup", np.argmax), ("worstup", np.argmin)])
def test_bestup_and_worstup_train_the_best_and_the_worst_candidate(tiny, kind, pick):
    estimator = FixedScores()
    sampler = SubnetSampler(tiny, SamplerSpec(kind, 5), seed=1, prior=FlopsPrior(tiny, pool_size=5000), estimator=estimator)
    for _ in range(20):
        chosen = sampler.sample()
        candidates = estimator.seen[-1]
        assert len(candidates) == 5
        assert chosen == candidates[int(pick(sampler.last_scores))]
        scores = estimator.score(candidates, None, None)
        assert scores[candidates.index(chosen)] == (scores.max() if kind == "bestup" else scores.min())


def test_loss_estimator_scores_are_minus_the_minibatch_loss(tiny):
    torch.manual_seed(0)
    supernet = Supernet(tiny).train()
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    prior = FlopsPrior(tiny, pool_size=5000)
    archs = prior.draw_in_bin(np.random.default_rng(0), int(prior.bins[3]), 4)
    running = [m.running_mean.clone() for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    scores = LossEstimator(supernet).score(archs, images, labels)
    after = [m.running_mean for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(running, after))  # BN statistics untouched
    for arch, score in zip(archs, scores):
        supernet.set_active(arch)
        with torch.no_grad(), supernet.frozen_bn_stats():
            loss = torch.nn.functional.cross_entropy(supernet(images), labels).item()
        assert abs(-score - loss) < 1e-5
    sampler = SubnetSampler(tiny, SamplerSpec("bestup", 4), seed=0, prior=prior, estimator=LossEstimator(supernet))
    chosen = sampler.sample(images, labels)
    assert -sampler.last_scores.max() == pytest.approx(min(-sampler.last_scores))
    assert chosen is not None


def test_uniform_sampler_is_seeded(tiny):
    a = [SubnetSampler(tiny, SamplerSpec("uniform"), seed=4).sample() for _ in range(1)]
    b = [SubnetSampler(tiny, SamplerSpec("uniform"), seed=4).sample() for _ in range(1)]
    assert a == b
