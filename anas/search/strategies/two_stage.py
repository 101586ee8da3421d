"""A two-stage (coordinate) search after HURRICANE (Zhang et al., "Fast Hardware-Aware
Neural Architecture Search", CVPR Workshops 2020).

HURRICANE searches a network's later layers with the earlier ones fixed, then the earlier
layers with the later ones fixed, instead of searching all layers at once. Here the
"two stages" are two groups of a subnet's settings (:func:`stage_groups`):

- **early**: the resolution, the first convolution's width, and every setting (width,
  depth, kernel size, expand ratio) of the first ``ceil(n_stages / 2)`` stages;
- **late**: every setting of the remaining stages, and the head's width.

and the search alternates between them while the budget of predictor calls lasts:

- **Start.** An eighth of the budget goes to subnets sampled inside the MFLOPs band
  (``problem.sample_in_band``).
- **Rounds.** A round searches one group with every other setting fixed to the
  incumbent's (the best *feasible* subnet so far: every bound ``problem.evaluate``
  checks, params and latency included). It is a short evolution (2 generations of 32
  children): the parents are the best scored subnets that share the incumbent's fixed
  group (the incumbent among them); children are local moves (1-3 settings of the group
  one choice up or down), resamples (each setting of the group redrawn with probability
  2 / its size) and uniform crossovers of two parents, repaired into the MFLOPs band by
  moving only the group's settings (``problem.repair(..., movable=...)``). Children
  outside the MFLOPs or params band, and subnets scored before, are dropped before the
  predictor is called. Rounds alternate late, early, late, ...
- **Restarts.** The search follows one incumbent, from the best start, until two rounds of
  each group in a row left it as it was (a coordinate-wise optimum: a round can only
  trade MFLOPs between settings of its own group); then it starts again from the next
  best start, else from the best of fresh subnets sampled in the band.
- **End.** When the budget is spent (never more than ``budget`` calls), or when no subnet
  inside the band is left unscored that these moves find (a band that holds few
  subnets). The best subnets are read from the archive, like every strategy's.

Measured on ``attentive-nas`` with the synthetic oracle (benchmarks/two_stage.py): with
half NSGA-II's predictor calls (2816), within a tenth of a point of NSGA-II's best
predicted top-1 at 5632 calls in every band and seed (at least 99.88 % of it; the
acceptance is 99.5 %). An earlier version ran four incumbents side by side from starts of
different early-group MFLOPs and kept the better half after 2, 4, ... cycles (successive
halving): its worst seed reached 99.94 %, 0.05 points closer, which the acceptance does
not need, so one incumbent is kept (docs/hurricane.md has both measurements).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from anas.search.problem import SearchProblem
from anas.search.strategies.strategy import register_strategy
from anas.space.cost import index_costs
from anas.space.search_space import SearchSpace

START_SHARE = 1 / 8  # of the budget: subnets sampled in the band before the rounds
GENERATION = 32  # children scored per generation (one predictor call)
GENERATIONS = 2  # generations per round
MAX_ROUNDS = 512  # larger budgets get larger generations, so that rounds stay few
PARENTS = 8  # the best subnets sharing the incumbent's fixed group breed
LOCAL_SHARE, RESAMPLE_SHARE = 0.6, 0.25  # of the children; crossovers are the rest
LOCAL_STEPS = 3  # a local move changes 1..LOCAL_STEPS settings by one choice
DRAWS = 4  # candidates drawn per child wanted, per attempt
ATTEMPTS = 4  # draws before a generation settles for fewer children
REPAIR_STEPS = 20  # a child is a few settings away from the band: repair gives up sooner
STALE = 4  # rounds in a row that leave the incumbent unchanged: a coordinate-wise optimum
FRESH = 1 / 16  # of the budget: subnets sampled for a restart once the starts are used up

LATE, EARLY = 1, 0  # indices into stage_groups(); rounds start with the late group


def stage_groups(space: SearchSpace) -> list[np.ndarray]:
    """The genome's columns (table column order, :meth:`SearchSpace.column_choices`) of
    the two groups: ``[early, late]``. Early: the resolution, the first convolution's
    width and every setting of the first ``ceil(n_stages / 2)`` stages; late: the other
    stages' settings and the head's width. Together they are every column, once."""
    columns, split = space.columns, math.ceil(space.num_stages / 2)
    early = [columns.resolution, columns.first_conv_width, *(c for i in range(split) for c in columns.stage(i))]
    late = [*(c for i in range(split, space.num_stages) for c in columns.stage(i)), columns.head_width]
    return [np.sort(early).astype(np.int64), np.sort(late).astype(np.int64)]


@register_strategy("two-stage")
def run_two_stage(problem: SearchProblem, budget: int, seed: int, start_share: float = START_SHARE,
                  generation: int = GENERATION, generations: int = GENERATIONS, parents: int = PARENTS) -> None:
    """HURRICANE-style coordinate search: the late stages with the early ones fixed to the
    incumbent, then the early ones with the late ones fixed, and so on (module docstring)."""
    rng = np.random.default_rng(seed)
    search = _Search(problem, budget, rng, parents, stage_groups(problem.space))
    start, start_rank = search.score(problem.sample_in_band(max(1, min(budget, round(budget * start_share))), rng))
    generation = max(generation, math.ceil((budget - problem.calls) / (MAX_ROUNDS * generations)))
    starts = list(np.argsort(-start_rank, kind="stable"))  # best first
    lane = search.next_lane(start, start_rank, starts)
    while lane is not None and problem.calls < budget:
        search.step(lane, generations, generation)
        if lane.stale >= STALE:  # rounds of both groups left the incumbent as it was
            search.used.add(int(problem.genome.keys(lane.genes[None])[0]))
            lane = search.next_lane(start, start_rank, starts)


@dataclass
class _Lane:
    """One coordinate search: its incumbent, the group of its next round, and how many
    rounds in a row left the incumbent as it was."""

    genes: np.ndarray
    rank: float
    group: int = LATE
    stale: int = 0


class _Search:
    """Everything scored so far (genes, ranks, keys; in buffers that grow by doubling),
    and the rounds."""

    def __init__(self, problem: SearchProblem, budget: int, rng: np.random.Generator, parents: int,
                 groups: list[np.ndarray]):
        self.problem, self.budget, self.rng, self.parents, self.groups = problem, budget, rng, parents, groups
        self.n = 0
        self.genes = np.empty((64, problem.genome.length), dtype=np.int64)
        self.rank = np.empty(64)
        self.rest = np.empty((len(groups), 64), dtype=np.int64)  # per group: keys of the other groups' settings
        self.known: set[int] = set()
        self.used: set[int] = set()  # keys of converged incumbents: no lane starts from them

    def rest_keys(self, genes: np.ndarray, group: int) -> np.ndarray:
        """Keys of ``genes`` with ``group``'s settings cleared: equal keys, equal other groups."""
        cleared = genes.copy()
        cleared[:, self.groups[group]] = 0
        return self.problem.genome.keys(cleared)

    def score(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score ``genes`` (distinct, unscored, inside the bands) as far as the budget
        allows. Ranks: the predicted score when feasible, far below every feasible one
        otherwise."""
        genes = genes[: self.budget - self.problem.calls]
        if len(genes) == 0:
            return genes, np.empty(0)
        result = self.problem.evaluate(genes)
        rank = np.where(result.feasible, result.pred_acc1, result.pred_acc1 - 1e9)
        end = self.n + len(genes)
        if end > len(self.rank):
            capacity = max(2 * len(self.rank), end)
            self.genes = np.concatenate([self.genes[: self.n], np.empty((capacity - self.n, genes.shape[1]),
                                                                        dtype=np.int64)])
            self.rank = np.concatenate([self.rank[: self.n], np.empty(capacity - self.n)])
            self.rest = np.concatenate([self.rest[:, : self.n],
                                        np.empty((len(self.groups), capacity - self.n), dtype=np.int64)], axis=1)
        self.genes[self.n:end], self.rank[self.n:end] = genes, rank
        for group in range(len(self.groups)):
            self.rest[group, self.n:end] = self.rest_keys(genes, group)
        self.n = end
        self.known.update(self.problem.genome.keys(genes).tolist())
        return genes, rank

    def unknown(self, genes: np.ndarray) -> np.ndarray:
        """Which of ``genes`` were never scored."""
        return np.array([key not in self.known for key in self.problem.genome.keys(genes).tolist()], dtype=bool)

    def next_lane(self, start: np.ndarray, start_rank: np.ndarray, starts: list[int]) -> _Lane | None:
        """A lane from the next unused start, else from the best of fresh subnets sampled
        in the band; None when the band holds no unscored subnet that sampling finds."""
        while starts:
            i = starts.pop(0)
            if int(self.problem.genome.keys(start[i][None])[0]) not in self.used:
                return _Lane(start[i], float(start_rank[i]))
        n = max(1, round(FRESH * self.budget))
        draws = self.problem.sample_in_band(n, self.rng)
        genes, rank = self.score(draws[self.unknown(draws)])
        if len(genes) == 0:
            return None
        best = int(rank.argmax())
        return _Lane(genes[best], float(rank[best]))

    def step(self, lane: _Lane, generations: int, generation: int) -> None:
        """One round of ``lane``'s next group; the lane's incumbent follows the best."""
        genes, rank = self.round(lane.genes, lane.group, generations, generation)
        if len(rank) and rank.max() > lane.rank:
            best = int(rank.argmax())
            lane.genes, lane.rank, lane.stale = genes[best].copy(), float(rank[best]), 0
        else:
            lane.stale += 1
        lane.group = EARLY if lane.group == LATE else LATE

    def round(self, incumbent: np.ndarray, group: int, generations: int,
              generation: int) -> tuple[np.ndarray, np.ndarray]:
        """A short evolutionary search over ``group``'s settings with every other setting
        fixed to ``incumbent``'s; returns what it scored."""
        sizes = self.problem.genome.sizes
        columns = self.groups[group][sizes[self.groups[group]] > 1]
        empty = np.empty((0, len(sizes)), dtype=np.int64), np.empty(0)
        if len(columns) == 0:
            return empty
        mask = np.zeros(len(sizes), dtype=bool)
        mask[columns] = True
        same = np.flatnonzero(self.rest[group, : self.n] == self.rest_keys(incumbent[None], group)[0])
        top = same[np.argsort(-self.rank[same], kind="stable")[: self.parents]]
        pool, pool_rank = self.genes[top], self.rank[top]
        scored = [empty]
        for _ in range(generations):
            wanted = min(generation, self.budget - self.problem.calls)
            if wanted <= 0:
                break
            children = self._children(pool, mask, columns, wanted)
            if len(children) == 0:
                break
            children, child_rank = self.score(children)
            scored.append((children, child_rank))
            pool, pool_rank = np.concatenate([pool, children]), np.concatenate([pool_rank, child_rank])
            top = np.argsort(-pool_rank, kind="stable")[: self.parents]
            pool, pool_rank = pool[top], pool_rank[top]
        return np.concatenate([g for g, _ in scored]), np.concatenate([r for _, r in scored])

    def _children(self, pool: np.ndarray, mask: np.ndarray, columns: np.ndarray, wanted: int) -> np.ndarray:
        """Up to ``wanted`` distinct unscored children of ``pool`` inside the bands that
        differ from their parents only in ``columns``."""
        problem, rng, genome = self.problem, self.rng, self.problem.genome
        found = np.empty((0, genome.length), dtype=np.int64)
        for _ in range(ATTEMPTS):
            draws = _offspring(pool, columns, genome.sizes, DRAWS * wanted, rng)
            costs = index_costs(problem.space, draws, problem.num_classes)
            outside = ~problem.flops.contains(costs.mflops)
            if outside.any():
                draws[outside] = problem.repair(draws[outside], rng, REPAIR_STEPS, movable=mask)
                costs = index_costs(problem.space, draws, problem.num_classes)
            inside = problem.in_bands(costs)
            draws = genome.unique(np.concatenate([found, draws[inside]]))
            found = draws[self.unknown(draws)]
            if len(found) >= wanted:
                break
        return found[:wanted]


def _offspring(pool: np.ndarray, columns: np.ndarray, sizes: np.ndarray, n: int,
               rng: np.random.Generator) -> np.ndarray:
    """``n`` children of ``pool`` (better parents more often) that differ only in
    ``columns`` (settings with more than one choice): local moves, resamples, crossovers."""
    weights = 1.0 / (1.0 + np.arange(len(pool)))  # pool is best first
    parent = rng.choice(len(pool), n, p=weights / weights.sum())
    children = pool[parent].copy()
    kind = rng.random(n)
    local, resample = kind < LOCAL_SHARE, (kind >= LOCAL_SHARE) & (kind < LOCAL_SHARE + RESAMPLE_SHARE)
    width = len(columns)
    # local moves: 1..LOCAL_STEPS distinct settings of the group, one choice up or down
    steps = rng.integers(1, min(LOCAL_STEPS, width) + 1, n)
    chosen = rng.random((n, width)).argsort(axis=1).argsort(axis=1) < steps[:, None]
    current = children[:, columns]
    direction = np.where(rng.random((n, width)) < 0.5, -1, 1)
    direction = np.where(current + direction < 0, 1, np.where(current + direction >= sizes[columns], -1, direction))
    moved = current + np.where(chosen, direction, 0)
    # resamples: each setting of the group redrawn with probability 2 / width (one at least)
    redraw = rng.random((n, width)) < 2.0 / width
    redraw |= ~redraw.any(axis=1)[:, None] & (np.arange(width) == rng.integers(0, width, n)[:, None])
    drawn = np.where(redraw, (rng.random((n, width)) * sizes[columns]).astype(np.int64), current)
    # crossovers: each setting of the group from either of two parents
    other = pool[rng.integers(0, len(pool), n)][:, columns]
    crossed = np.where(rng.random((n, width)) < 0.5, current, other)
    children[:, columns] = np.where(local[:, None], moved, np.where(resample[:, None], drawn, crossed))
    return children
