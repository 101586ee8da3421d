"""Random search inside the band: the baseline every strategy should beat."""

from __future__ import annotations

import numpy as np

from anas.search.problem import SearchProblem
from anas.search.strategies.strategy import register_strategy


@register_strategy("random")
def run_random(problem: SearchProblem, budget: int, seed: int) -> None:
    """Subnets sampled uniformly inside the band, all scored at once."""
    rng = np.random.default_rng(seed)
    problem.evaluate(problem.sample_in_band(budget, rng))
