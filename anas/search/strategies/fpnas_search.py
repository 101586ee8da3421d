"""FP-NAS against a predictor (``anas search --strategy fpnas``): learn where to look.

A :class:`~anas.space.distribution.SubnetDistribution` over the space starts uniform and
factorized. Each round draws K subnets from it, with K = ``max(2, ceil(lam x entropy))``
(FP-NAS's adaptive K: many draws while the distribution is broad, few once it is sharp),
repairs them into the MFLOPs band (the bands are hard limits; a subnet still outside
them gets no weight), scores them with the predictor, and moves the logits by the
importance-weighted step of PARSEC with the predictions as rewards. Rewards are the
predictions divided by their standard deviation within the round (never below
``1e-6``), so any predictor kind works, whatever the scale of its scores. Halfway
through the budget the distribution switches to the joint form (coarse to fine,
starting equal to the factorized one). The last call scores the distribution's most
likely subnet. The best subnets are read from the archive, as for every strategy.
"""

from __future__ import annotations

import numpy as np

from anas.search.problem import SearchProblem
from anas.search.strategies.strategy import register_strategy
from anas.space.distribution import SubnetDistribution, adaptive_k

LAMBDA = 1.0  # draws per nat of entropy
LEARNING_RATE = 0.5
SWITCH = 0.5  # share of the budget spent factorized


@register_strategy("fpnas")
def run_fpnas(problem: SearchProblem, budget: int, seed: int) -> SubnetDistribution:
    """Learn a distribution over the band's subnets for ``budget`` predictor calls;
    returns it (the archive holds everything scored)."""
    rng = np.random.default_rng(seed)
    dist = SubnetDistribution.factorized(problem.space)
    while problem.calls < budget - 1:
        if dist.form == "factorized" and problem.calls >= SWITCH * budget:
            dist = dist.joint()
        k = min(adaptive_k(dist.entropy(), LAMBDA), budget - 1 - problem.calls)
        genes = problem.repair(dist.sample(k, rng), rng)
        scored = problem.evaluate(genes)
        dist.update(genes, rewards(scored.pred_acc1, scored.feasible), LEARNING_RATE)
    problem.evaluate(problem.repair(dist.mode(), rng))
    return dist


def rewards(predicted: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Predictions over their spread in the round; ``-inf`` outside the bounds."""
    inside = predicted[feasible]
    scale = max(float(inside.std()), 1e-6) if len(inside) > 1 else 1.0
    return np.where(feasible, predicted / scale, -np.inf)
