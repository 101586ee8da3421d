"""FOX-NAS's "simulated annealing" (great8nctu/FOX-NAS, search_strategy/Simulated_annealing.py),
rescaled to a budget of predictor calls and to the bands.

The published search walks from a random feasible subnet: a move changes ``step`` randomly
chosen settings by one choice index each (-1, 0 or +1), infeasible proposals are redrawn;
any improvement is accepted, and once 500 proposals in a row were rejected a loss smaller
than 0.1 points is accepted too (during the first 10,000 iterations); ``step`` starts at 8
and drops by one every 1,000 iterations down to 5; a walk stops after 5,000 straight
rejections; 3 walks; the 5 best distinct subnets are kept.

Here (docs/search.md, "anneal"), with ``budget`` predictor calls:

- **Walks and budget.** The 3 walks run side by side and each gets a third of the budget
  (its *share*, 1877 calls at the default 5632). The published walk is taken as 15,000
  iterations (10,000 with the tolerance, then 5,000 rejections to stop) and every
  iteration count of the method is multiplied by ``share / 15,000``: at the default
  budget the tolerance opens after 63 straight rejections, is offered during a walk's
  first 1252 iterations, a walk gives up after 626, and ``step`` drops 8 -> 7 -> 6 -> 5
  after 126, 251 and 376 iterations.
- **Rounds.** A predictor call has a fixed cost far above a subnet's (LightGBM: about
  10 ms for 1 row or 64), so proposals are scored in rounds: per round each walk draws
  ``ceil(share / 128)`` proposals from its current subnet (15 at the default budget),
  and the 3 walks' proposals share one call. A walk moves to the best proposal of its
  round when it improves; else it takes them one by one as rejections, and the first
  that loses less than the tolerance is accepted once the tolerance is open. With one
  proposal per round (budgets up to 384) a round is one step of the published walk.
- **Starts.** A walk starts from the best of ``share / 16`` random subnets inside the
  bands (117 at the default budget; the published walk starts from one): a walk only
  moves a few settings at a time, and the basin it starts in (e.g. the resolution)
  decides much of where it ends; measured on ``attentive-nas`` 400-600 MFLOPs, single
  random starts ended 0.06 and 0.09 points below NSGA-II in 2 of 6 seeds.
- **Restarts.** A walk that gives up starts again (from a fresh best-of-random start)
  with what is left of the budget, so the whole budget is spent; the published script
  ran 3 walks to their end. The search never makes more than ``budget`` calls.
- **Known subnets are free.** A proposal already scored is answered from a cache (the
  predictor is deterministic): it counts as an iteration, not as a call, and a round
  draws up to 4 proposals per subnet it sends to the predictor. The search stops before
  its budget when the walks meet only known subnets for many rounds (a band that holds
  few subnets), like ``random``.
- **Bands.** A proposal outside the MFLOPs band (or the params band) is redrawn up to 8
  times (costs only, no predictor call), then repaired with ``problem.repair``; a repaired
  proposal still outside the params band is a rejection without a call. Latency bands
  are checked by ``problem.evaluate``: an infeasible result is never the current point.
- **Tolerance.** 0.1 points when the predictor's scores are accuracies (its
  ``score_label`` ends with "(%)"), else 0.1 % of the current score's magnitude.
- **Settings.** Moves pick settings uniformly among those with more than one choice (the
  published weights were specific to the FOX-NAS CPU space); ``step`` is capped by their
  number. The best subnets (the published script kept 5) are read from the archive,
  like every strategy's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anas.search.problem import SearchProblem
from anas.search.strategies.strategy import register_strategy

HORIZON = 15_000  # iterations of one published walk: 10,000 with the tolerance, then 5,000 rejections
RESTARTS = 3
STEP_START, STEP_END, STEP_EVERY = 8, 5, 1_000
TOLERANCE_AFTER = 500  # straight rejections before a small loss is accepted
STOP_AFTER = 5_000  # straight rejections that end a walk
TOLERANCE_UNTIL = 10_000  # iterations of a walk during which the tolerance is offered
TOLERANCE_POINTS = 0.1  # accuracy points; relative (0.1 %) for scores that are not accuracies
TOLERANCE_RELATIVE = 1e-3
ROUNDS = 128  # rounds per walk share: proposals are scored in batches (a call has a fixed cost)
BATCH_MAX = 64  # proposals per walk and round, at most
START_POOL = 1 / 16  # a walk starts from the best of this share of its calls of random subnets in the bands
DRAWS_PER_NEW = 4  # proposals drawn per walk and round: up to this many per subnet to score
REDRAWS = 8  # proposals drawn per move before the first is repaired into the band


@dataclass(frozen=True)
class Schedule:
    """The published iteration counts, multiplied by ``share / HORIZON``."""

    share: float  # predictor calls per walk

    @property
    def scale(self) -> float:
        return self.share / HORIZON

    @property
    def tolerance_after(self) -> int:
        return max(1, round(TOLERANCE_AFTER * self.scale))

    @property
    def stop_after(self) -> int:
        return max(self.tolerance_after + 1, round(STOP_AFTER * self.scale))

    @property
    def tolerance_until(self) -> int:
        return max(1, round(TOLERANCE_UNTIL * self.scale))

    @property
    def batch(self) -> int:
        """Proposals per walk and round (one predictor call per round for all walks)."""
        return int(min(BATCH_MAX, max(1, np.ceil(self.share / ROUNDS))))

    @property
    def start_pool(self) -> int:
        return max(1, round(START_POOL * self.share))

    def step(self, iteration: int) -> int:
        every = max(1.0, STEP_EVERY * self.scale)
        return max(STEP_END, STEP_START - int(iteration // every))


def tolerance_for(score: float, percent: bool) -> float:
    """The loss a walk may accept from ``score``: 0.1 accuracy points, or 0.1 % of the
    score's magnitude for scores that are not accuracies."""
    return TOLERANCE_POINTS if percent else TOLERANCE_RELATIVE * abs(score)


@dataclass
class _Walk:
    genes: np.ndarray | None = None  # None: (re)start from a fresh subnet
    score: float = -np.inf  # -inf while the current subnet is infeasible
    iteration: int = 0
    rejected: int = 0  # straight rejections


@register_strategy("anneal")
def run_anneal(problem: SearchProblem, budget: int, seed: int, restarts: int = RESTARTS) -> None:
    """FOX-NAS's simulated annealing: ``restarts`` local walks side by side, moves of
    ``step`` settings by one choice, improvements accepted, small losses accepted after a
    run of rejections; rescaled to ``budget`` predictor calls (module docstring)."""
    rng = np.random.default_rng(seed)
    genome = problem.genome
    movable = np.flatnonzero(genome.sizes > 1)
    if len(movable) == 0:  # a space of one subnet
        problem.evaluate(problem.sample_in_band(1, rng))
        return
    schedule = Schedule(budget / restarts)
    batch = schedule.batch
    percent = problem.predictor.score_label.endswith("(%)")
    walks = [_Walk() for _ in range(restarts)]
    scores: dict[int, float] = {}  # genome key -> predicted score, -inf when infeasible
    idle, idle_limit = 0, max(2 * schedule.stop_after // batch, 50)  # rounds without a call: the band is exhausted
    while problem.calls < budget and idle < idle_limit:
        starting = [w for w in walks if w.genes is None]
        moving = [w for w in walks if w.genes is not None]
        pool = schedule.start_pool
        starts = list(_fresh_starts(problem, len(starting) * pool, scores, rng)) if starting else []
        wanted = ({k: g for k, g in zip(genome.keys(np.stack(starts)).tolist(), starts) if k not in scores}
                  if starts else {})  # key -> genes to score this round
        rounds = []  # per moving walk: its proposals of this round, in order, with their keys
        if moving:
            draws = DRAWS_PER_NEW * batch
            proposals = _propose(problem, np.repeat(np.stack([w.genes for w in moving]), draws, axis=0),
                                 np.repeat([schedule.step(w.iteration) for w in moving], draws), movable, rng)
            for w in range(len(moving)):
                rounds.append(_take(proposals[w * draws:(w + 1) * draws], genome, scores, wanted, batch))
        calls_before = problem.calls
        _score(problem, wanted, scores, budget)
        idle = 0 if problem.calls > calls_before else idle + 1
        for i, walk in enumerate(starting):
            drawn = [(scores[k], g) for g, k in zip(starts[i * pool:(i + 1) * pool],
                                                     genome.keys(np.stack(starts[i * pool:(i + 1) * pool])).tolist())
                     if k in scores]
            if drawn:
                best = max(range(len(drawn)), key=lambda j: drawn[j][0])
                walk.genes, walk.score, walk.iteration, walk.rejected = drawn[best][1], drawn[best][0], 0, 0
        for walk, taken in zip(moving, rounds):
            answered = []
            for genes, key in taken:
                if key is not None and key not in scores:
                    break  # the budget ran out
                answered.append((genes, -np.inf if key is None else scores[key]))
            if answered:
                _step_walk(walk, [g for g, _ in answered], np.array([v for _, v in answered]), schedule, percent)


def _take(proposals: list, genome, scores: dict[int, float], wanted: dict, batch: int) -> list:
    """The proposals of one walk's round: in order, up to the one that makes ``batch``
    subnets to score (proposals already scored or out of the bands are free); adds those
    to score to ``wanted``."""
    keys = genome.keys(np.stack([np.zeros_like(genome.sizes) if g is None else g for g in proposals]))
    taken, new = [], 0
    for genes, key in zip(proposals, keys.tolist()):
        if genes is None:
            taken.append((None, None))
            continue
        if key not in scores and key not in wanted:
            if new == batch:
                break
            new += 1
            wanted[key] = genes
        taken.append((genes, key))
    return taken


def _step_walk(walk: _Walk, proposals: list, values: np.ndarray, schedule: Schedule, percent: bool) -> None:
    """One round of a walk: the best improving proposal is accepted; else, in order, each
    proposal is one more rejection, and after ``tolerance_after`` of them in a row (during
    the tolerance window) the first proposal that loses less than the tolerance is
    accepted; ``stop_after`` rejections in a row end the walk."""
    if len(values) == 0:
        return
    best = int(values.argmax())
    if values[best] > walk.score:
        walk.iteration += best + 1
        walk.genes, walk.score, walk.rejected = proposals[best], float(values[best]), 0
        return
    tolerance = tolerance_for(walk.score, percent)
    for genes, value in zip(proposals, values):
        walk.iteration += 1
        if (np.isfinite(value) and walk.rejected > schedule.tolerance_after
                and walk.iteration <= schedule.tolerance_until and value > walk.score - tolerance):
            walk.genes, walk.score, walk.rejected = genes, float(value), 0
            return
        walk.rejected += 1
        if walk.rejected >= schedule.stop_after:
            walk.genes = None
            return


def _score(problem: SearchProblem, wanted: dict, scores: dict[int, float], budget: int) -> None:
    """Score ``wanted`` (key -> genes, none scored yet) in one predictor call, as many as
    the budget allows, in order."""
    keys = list(wanted)[: budget - problem.calls]
    if not keys:
        return
    result = problem.evaluate(np.stack([wanted[k] for k in keys]))
    for key, value, feasible in zip(keys, result.pred_acc1, result.feasible):
        scores[key] = float(value) if feasible else -np.inf


def _fresh_starts(problem: SearchProblem, n: int, scores: dict[int, float], rng: np.random.Generator) -> np.ndarray:
    """``n`` random subnets inside the bands, unscored ones first (the published walks start
    from a random feasible subnet)."""
    draws = problem.sample_in_band(max(16, 4 * n), rng)
    inside = problem.genes_in_bands(draws)
    known = np.isin(problem.genome.keys(draws), np.fromiter(scores, dtype=np.int64, count=len(scores)))
    order = np.lexsort((known, ~inside))  # in the bands first, then unscored first
    return draws[order[:n]] if len(order) >= n else draws[order[np.arange(n) % len(order)]]


def _propose(problem: SearchProblem, current: np.ndarray, steps: np.ndarray, movable: np.ndarray,
             rng: np.random.Generator) -> list[np.ndarray | None]:
    """One move from each row of ``current``: ``steps[i]`` distinct movable settings, each
    moved by -1, 0 or +1 choice (uniformly among the moves that stay in range); up to
    ``REDRAWS`` draws, the first inside the bands is taken, else the first draw repaired
    into the MFLOPs band. None where even that is outside the bands."""
    sizes = problem.genome.sizes
    walks, length = len(current), len(sizes)
    base = np.repeat(current[:, None, :], REDRAWS, axis=1)  # (rows, redraws, genes)
    rank = rng.random((walks, REDRAWS, len(movable))).argsort(axis=2).argsort(axis=2)
    chosen = np.zeros((walks, REDRAWS, length), dtype=bool)
    chosen[:, :, movable] = rank < np.minimum(steps, len(movable))[:, None, None]
    low = np.where(base > 0, -1, 0)
    high = np.where(base < sizes - 1, 1, 0)
    move = low + np.floor(rng.random(base.shape) * (high - low + 1)).astype(np.int64)
    proposals = (base + np.where(chosen, move, 0)).reshape(walks * REDRAWS, length)
    inside = problem.genes_in_bands(proposals).reshape(walks, REDRAWS)
    first = inside.argmax(axis=1)
    picked = proposals.reshape(walks, REDRAWS, length)[np.arange(walks), first]
    outside = ~inside.any(axis=1)
    if outside.any():
        repaired = problem.repair(picked[outside], rng)
        picked[outside] = repaired
        ok = np.ones(walks, dtype=bool)
        ok[outside] = problem.genes_in_bands(repaired)
    else:
        ok = np.ones(walks, dtype=bool)
    return [picked[i] if ok[i] else None for i in range(walks)]
