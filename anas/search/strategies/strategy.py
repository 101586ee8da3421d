"""The search-strategy protocol.

A strategy is a function registered with :func:`register_strategy`:
``run(problem, budget, seed)``. It proposes genomes and scores them with
``problem.evaluate`` (which keeps every distinct subnet in the archive and counts the
predictor calls) until ``problem.calls`` reaches ``budget``; it may use
``problem.sample_in_band`` and ``problem.repair`` to stay inside the MFLOPs band. The
best subnets are then read from the archive, whatever the strategy. A strategy that
learns a :class:`~anas.space.distribution.SubnetDistribution` (``fpnas``) returns it, and
the search writes it as ``distribution.json``.
"""

from __future__ import annotations

from collections.abc import Callable

from anas.registry import Registry
from anas.search.problem import SearchProblem

Strategy = Callable[[SearchProblem, int, int], None]

STRATEGIES: Registry[Strategy] = Registry("strategy")
register_strategy = STRATEGIES.register
