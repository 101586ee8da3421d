"""Second stage: the best subnets under a budget, ranked by the accuracy predictor.

Subnets are integer genomes (one choice index per setting). Every strategy starts from
subnets sampled inside the MFLOPs band and repairs every child back into it, so a narrow
band next to the smallest subnet is searched as quickly as a wide one, and a band no
subnet can meet is refused at once.

Strategies: ``nsga2`` (pymoo, predicted accuracy vs MFLOPs [vs latency]), ``evolution``
(the bucketed evolution that produced the published AttentiveNAS models), ``random``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from anas.space.arch import Arch, ArchBatch, LIST_SETTINGS, largest_arch, sample_archs, sample_archs_by_size, smallest_arch
from anas.space.cost import batch_costs, index_costs
from anas.errors import AnasError
from anas.predict.predictor import Predictor
from anas.space.space import SearchSpace

STRATEGIES = ("nsga2", "evolution", "random")
_BAND = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*$")


@dataclass(frozen=True)
class Band:
    lo: float
    hi: float

    def contains(self, values: np.ndarray) -> np.ndarray:
        return (values >= self.lo) & (values <= self.hi)

    def __str__(self) -> str:
        return f"{self.lo:g}-{self.hi:g}"


def parse_band(text: str, option: str) -> Band:
    """``LO-HI`` with non-negative numbers and LO <= HI."""
    match = _BAND.match(text or "")
    if match is None:
        raise AnasError(f"{option} {text!r} is not a band: write LO-HI, e.g. {option} 400-600")
    lo, hi = float(match.group(1)), float(match.group(2))
    if lo > hi:
        raise AnasError(f"{option} {text}: LO ({lo:g}) is above HI ({hi:g})")
    return Band(lo, hi)


# ----------------------------------------------------------------------------------------
# Genomes
# ----------------------------------------------------------------------------------------


class Genome:
    """Subnets as integer vectors: resolution, widths, depths, kernel sizes, expand ratios
    (choice indices, in table column order). Larger indices always cost more."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.choices = [space.resolutions]
        for setting in LIST_SETTINGS:
            self.choices += list(space.choices(setting))
        self.sizes = np.array([len(c) for c in self.choices], dtype=np.int64)
        self._tables = [np.asarray(c, dtype=np.float64) for c in self.choices]
        counts = [1] + [len(space.choices(s)) for s in LIST_SETTINGS]
        self._slices = np.cumsum([0] + counts)

    @property
    def length(self) -> int:
        return len(self.sizes)

    def decode(self, genes: np.ndarray) -> ArchBatch:
        values = np.stack([table[genes[:, i]] for i, table in enumerate(self._tables)], axis=1)
        s = self._slices
        return ArchBatch(
            resolution=values[:, 0].astype(np.int64),
            width=values[:, s[1]:s[2]].astype(np.int64),
            depth=values[:, s[2]:s[3]].astype(np.int64),
            kernel_size=values[:, s[3]:s[4]].astype(np.int64),
            expand_ratio=values[:, s[4]:s[5]],
        )

    def encode(self, batch: ArchBatch) -> np.ndarray:
        columns = [batch.resolution[:, None], batch.width, batch.depth, batch.kernel_size, batch.expand_ratio]
        values = np.concatenate([c.astype(np.float64) for c in columns], axis=1)
        return np.stack([np.searchsorted(table, values[:, i]) for i, table in enumerate(self._tables)], axis=1)

    def random(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.random((n, self.length)) * self.sizes).astype(np.int64)

    def keys(self, genes: np.ndarray) -> np.ndarray:
        """One integer per genome (mixed radix); equal keys, equal subnets."""
        if np.prod(self.sizes.astype(float)) < 2.0**62:
            radix = np.concatenate([[1], np.cumprod(self.sizes[:-1])]).astype(np.int64)
            return genes @ radix
        return np.array([hash(row.tobytes()) for row in genes], dtype=np.int64)

    def unique(self, genes: np.ndarray) -> np.ndarray:
        """Distinct genomes, first occurrences in order."""
        _, first = np.unique(self.keys(genes), return_index=True)
        return genes[np.sort(first)]


# ----------------------------------------------------------------------------------------
# The problem: costs, bounds and predicted accuracy of genomes
# ----------------------------------------------------------------------------------------


@dataclass
class Evaluated:
    """Everything scored so far, one row per distinct subnet."""

    genes: np.ndarray
    pred_acc1: np.ndarray
    mflops: np.ndarray
    params_m: np.ndarray
    latency_ms: np.ndarray  # NaN where latency is not asked for
    feasible: np.ndarray


@dataclass
class SearchProblem:
    space: SearchSpace
    predictor: Predictor
    flops: Band
    params: Band | None = None
    latency: Band | None = None
    latency_objective: bool = False
    measure_latency: Callable[[Arch], float] | None = None
    num_classes: int | None = None
    calls: int = 0
    _archive: dict = field(default_factory=dict)

    def __post_init__(self):
        self.genome = Genome(self.space)
        self._check_feasible()

    @property
    def uses_latency(self) -> bool:
        return self.latency is not None or self.latency_objective

    def _check_feasible(self) -> None:
        extremes = batch_costs(self.space, ArchBatch.from_archs([smallest_arch(self.space), largest_arch(self.space)]),
                               self.num_classes)
        low, high = extremes.mflops
        if self.flops.hi < low or self.flops.lo > high:
            raise AnasError(f"no subnet of space {self.space.name} has {self.flops} MFLOPs: its subnets span "
                            f"{low:.1f}-{high:.1f} MFLOPs")
        if self.params is not None:
            p_low, p_high = extremes.params_m
            if self.params.hi < p_low or self.params.lo > p_high:
                raise AnasError(f"no subnet of space {self.space.name} has {self.params}M params: its subnets span "
                                f"{p_low:.3f}-{p_high:.3f}M")

    def mflops(self, genes: np.ndarray) -> np.ndarray:
        return index_costs(self.space, genes, self.num_classes).mflops

    def evaluate(self, genes: np.ndarray) -> Evaluated:
        """Predicted accuracy, costs and feasibility of ``genes``; counts predictor calls and
        keeps every distinct subnet in the archive."""
        genes = np.asarray(genes, dtype=np.int64)
        batch = self.genome.decode(genes)
        costs = index_costs(self.space, genes, self.num_classes)
        pred = self.predictor.predict(batch)
        self.calls += len(genes)
        feasible = self.flops.contains(costs.mflops)
        if self.params is not None:
            feasible &= self.params.contains(costs.params_m)
        latency = np.full(len(genes), np.nan)
        if self.uses_latency:  # timing is costly: only subnets that meet the other bounds
            for i in np.flatnonzero(feasible):
                latency[i] = self.measure_latency(batch[int(i)])
            if self.latency is not None:
                feasible &= self.latency.contains(np.nan_to_num(latency, nan=np.inf))
        result = Evaluated(genes, pred, costs.mflops, costs.params_m, latency, feasible)
        for i, key in enumerate(self.genome.keys(genes).tolist()):
            self._archive.setdefault(key, (genes[i], pred[i], costs.mflops[i], costs.params_m[i], latency[i], feasible[i]))
        return result

    def archive(self) -> Evaluated:
        rows = list(self._archive.values())
        return Evaluated(*(np.array([r[k] for r in rows]) for k in range(6)))

    # -- staying inside the band -------------------------------------------------------

    def repair(self, genes: np.ndarray, rng: np.random.Generator, max_steps: int = 300) -> np.ndarray:
        """Move every genome into the MFLOPs band one choice at a time: a random setting one
        choice down while above the band, up while below, never jumping over the band."""
        genes = np.array(genes, dtype=np.int64)
        mflops = self.mflops(genes)
        for _ in range(max_steps):
            above, below = mflops > self.flops.hi, mflops < self.flops.lo
            rows = np.flatnonzero(above | below)
            if len(rows) == 0:
                break
            step = np.where(above[rows], -1, 1)
            target = genes[rows] + step[:, None]
            movable = (target >= 0) & (target < self.genome.sizes)
            scores = np.where(movable, rng.random(movable.shape), -1.0)
            gene = scores.argmax(axis=1)
            ok = movable[np.arange(len(rows)), gene]
            rows, gene, step = rows[ok], gene[ok], step[ok]
            if len(rows) == 0:
                break
            proposal = genes[rows].copy()
            proposal[np.arange(len(rows)), gene] += step
            new = self.mflops(proposal)
            keep = np.where(step < 0, new >= self.flops.lo, new <= self.flops.hi)
            genes[rows[keep]] = proposal[keep]
            mflops[rows[keep]] = new[keep]
        return genes

    def sample_in_band(self, n: int, rng: np.random.Generator, max_rounds: int = 6) -> np.ndarray:
        """``n`` distinct genomes inside the MFLOPs band: uniform and size-spread draws that
        land in it, then the draws nearest to it repaired into it. Bounded; raises when the
        band holds no subnet that these moves reach."""
        found = np.empty((0, self.genome.length), dtype=np.int64)
        for _ in range(max_rounds):
            draws = [sample_archs(self.space, 2 * n, rng), sample_archs_by_size(self.space, 2 * n, rng)]
            genes = np.concatenate([self.genome.encode(b) for b in draws])
            mflops = self.mflops(genes)
            inside = self.flops.contains(mflops)
            missing = n - len(found) - int(inside.sum())
            if missing > 0:  # repair the nearest outsiders
                distance = np.maximum(self.flops.lo - mflops, mflops - self.flops.hi)
                nearest = np.argsort(np.where(inside, np.inf, distance))[: 2 * missing]
                repaired = self.repair(genes[nearest], rng)
                genes = np.concatenate([genes[inside], repaired[self.flops.contains(self.mflops(repaired))]])
            else:
                genes = genes[inside]
            found = self.genome.unique(np.concatenate([found, genes]))
            if len(found) >= n:
                break
        if len(found) == 0:
            raise AnasError(f"no subnet of space {self.space.name} was found with {self.flops} MFLOPs: "
                            f"the band falls between the costs of neighbouring subnets; widen it")
        return found[rng.permutation(len(found))[:n]]


# ----------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------


def run_random(problem: SearchProblem, budget: int, rng: np.random.Generator) -> None:
    problem.evaluate(problem.sample_in_band(budget, rng))


def run_evolution(problem: SearchProblem, budget: int, rng: np.random.Generator, population: int = 512,
                  mutations: int = 128, crossovers: int = 128, mutate_prob: float = 0.2,
                  crossover_prob: float = 0.5, bucket_mflops: float = 10.0) -> None:
    """The AttentiveNAS search: a parent population, per iteration ``mutations`` mutants
    (each gene resampled with ``mutate_prob``) and ``crossovers`` children (each gene from
    either parent with ``crossover_prob``); the next parents are the best per
    ``bucket_mflops`` bucket (round robin over buckets). Defaults: 512 + 20 x 256 calls."""
    if budget < population + mutations + crossovers:
        population = max(2, budget // 2)
        mutations = crossovers = max(1, (budget - population) // 2)
    parents = problem.sample_in_band(population, rng)
    problem.evaluate(parents)
    while problem.calls + mutations + crossovers <= budget:
        mutants = parents[rng.integers(0, len(parents), mutations)].copy()
        resample = rng.random(mutants.shape) < mutate_prob
        mutants[resample] = problem.genome.random(mutations, rng)[resample]
        mothers = parents[rng.integers(0, len(parents), crossovers)]
        fathers = parents[rng.integers(0, len(parents), crossovers)]
        children = np.where(rng.random(mothers.shape) < crossover_prob, mothers, fathers)
        problem.evaluate(problem.repair(np.concatenate([mutants, children]), rng))
        archive = problem.archive()
        parents = _best_per_bucket(archive, population, bucket_mflops)


def _best_per_bucket(archive: Evaluated, population: int, bucket_mflops: float) -> np.ndarray:
    """Up to ``population`` genomes: the best predicted per MFLOPs bucket, round robin."""
    index = np.flatnonzero(archive.feasible)
    if len(index) == 0:
        index = np.arange(len(archive.genes))
    buckets = np.floor(archive.mflops[index] / bucket_mflops).astype(np.int64)
    order = index[np.lexsort((-archive.pred_acc1[index], buckets))]
    sorted_buckets = np.floor(archive.mflops[order] / bucket_mflops).astype(np.int64)
    rank_in_bucket = np.arange(len(order)) - np.searchsorted(sorted_buckets, sorted_buckets)
    chosen = order[np.lexsort((sorted_buckets, rank_in_bucket))][:population]
    return archive.genes[chosen]


def run_nsga2(problem: SearchProblem, budget: int, seed: int, population: int = 256) -> None:
    """NSGA-II from pymoo on integer genes, with band sampling and band repair."""
    from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
    from pymoo.core.mating import Mating
    from pymoo.operators.selection.tournament import TournamentSelection
    from pymoo.core.duplicate import DuplicateElimination
    from pymoo.core.problem import Problem
    from pymoo.core.repair import Repair
    from pymoo.core.sampling import Sampling
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.optimize import minimize

    rng = np.random.default_rng(seed)
    population = max(4, min(population, budget // 4))
    n_constraints = 2 + (2 if problem.params else 0) + (2 if problem.latency else 0)
    n_objectives = 3 if problem.latency_objective else 2

    class _Problem(Problem):
        def __init__(self):
            super().__init__(n_var=problem.genome.length, n_obj=n_objectives, n_ieq_constr=n_constraints,
                             xl=np.zeros(problem.genome.length), xu=(problem.genome.sizes - 1).astype(float), vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            result = problem.evaluate(np.rint(x).astype(np.int64))
            objectives = [-result.pred_acc1, result.mflops]
            constraints = [problem.flops.lo - result.mflops, result.mflops - problem.flops.hi]
            if problem.params is not None:
                constraints += [problem.params.lo - result.params_m, result.params_m - problem.params.hi]
            if problem.latency is not None:
                latency = np.nan_to_num(result.latency_ms, nan=1e9)
                constraints += [problem.latency.lo - latency, latency - problem.latency.hi]
            if problem.latency_objective:  # untimed (out-of-band) subnets rank last
                objectives.append(np.nan_to_num(result.latency_ms, nan=1e9))
            out["F"] = np.stack(objectives, axis=1)
            out["G"] = np.stack(constraints, axis=1)

    class _BandSampling(Sampling):
        def _do(self, _problem, n_samples, **kwargs):
            return problem.sample_in_band(n_samples, rng).astype(float)

    class _KeyDuplicates(DuplicateElimination):
        """Duplicates by genome key: linear time instead of pymoo's pairwise distances."""

        def _do(self, pop, other, is_duplicate):
            keys = problem.genome.keys(np.rint(pop.get("X")).astype(np.int64))
            if other is None:
                first = np.unique(keys, return_index=True)[1]
                duplicate = np.ones(len(keys), dtype=bool)
                duplicate[first] = False
            else:
                duplicate = np.isin(keys, problem.genome.keys(np.rint(other.get("X")).astype(np.int64)))
            is_duplicate |= duplicate
            return is_duplicate

    class _BandRepair(Repair):
        def _do(self, _problem, x, **kwargs):
            genes = np.clip(np.rint(x).astype(np.int64), 0, problem.genome.sizes - 1)
            return problem.repair(genes, rng).astype(float)

    crossover = SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair())
    mutation = PM(eta=20, vtype=float, repair=RoundingRepair())
    # In a narrow band repaired offspring often repeat known subnets: a few mating rounds
    # per generation are enough (pymoo's default tries up to 100).
    mating = Mating(TournamentSelection(func_comp=binary_tournament), crossover, mutation, repair=_BandRepair(),
                    eliminate_duplicates=_KeyDuplicates(), n_max_iterations=3)
    algorithm = NSGA2(pop_size=population, sampling=_BandSampling(), crossover=crossover, mutation=mutation,
                      repair=_BandRepair(), eliminate_duplicates=_KeyDuplicates(), mating=mating)
    minimize(_Problem(), algorithm, ("n_eval", budget), seed=seed, verbose=False)


# ----------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------


def pareto_mask(objectives: np.ndarray) -> np.ndarray:
    """Rows not dominated by any other row (all objectives minimized)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    mask = np.zeros(len(objectives), dtype=bool)
    if len(objectives):
        mask[NonDominatedSorting().do(objectives, only_non_dominated_front=True)] = True
    return mask


@dataclass
class SearchResult:
    space: SearchSpace
    strategy: str
    genome: Genome
    archive: Evaluated
    front: np.ndarray  # indices into the archive, best predicted first
    best: int  # index into the archive
    calls: int
    seconds: float

    def arch(self, index: int) -> Arch:
        return self.genome.decode(self.archive.genes[index:index + 1])[0]


def search(problem: SearchProblem, strategy: str = "nsga2", budget: int = 5632, seed: int = 0) -> SearchResult:
    if strategy not in STRATEGIES:
        raise AnasError(f"unknown strategy {strategy!r}: use {', '.join(STRATEGIES)}")
    if budget < 8:
        raise AnasError("--budget must be at least 8 predictor calls")
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    if strategy == "random":
        run_random(problem, budget, rng)
    elif strategy == "evolution":
        run_evolution(problem, budget, rng)
    else:
        run_nsga2(problem, budget, seed)
    seconds = time.perf_counter() - start
    archive = problem.archive()
    feasible = np.flatnonzero(archive.feasible)
    if len(feasible) == 0:
        raise AnasError(f"no evaluated subnet met every bound ({problem.flops} MFLOPs"
                        + (f", {problem.params}M params" if problem.params else "")
                        + (f", {problem.latency} ms" if problem.latency else "") + "): relax the bounds")
    objectives = [-archive.pred_acc1[feasible], archive.mflops[feasible]]
    if problem.latency_objective:
        objectives.append(archive.latency_ms[feasible])
    front = feasible[pareto_mask(np.stack(objectives, axis=1))]
    front = front[np.argsort(-archive.pred_acc1[front], kind="stable")]
    return SearchResult(problem.space, strategy, problem.genome, archive, front, int(front[0]), problem.calls, seconds)


# ----------------------------------------------------------------------------------------
# Latency, verification and output files
# ----------------------------------------------------------------------------------------


class LatencyCache:
    """Latency of static networks on one device, measured once per subnet."""

    def __init__(self, space: SearchSpace, config, num_classes: int | None = None):
        self.space, self.config, self.num_classes = space, config, num_classes
        self.measured: dict[Arch, float] = {}

    def __call__(self, arch: Arch) -> float:
        if arch not in self.measured:
            from anas.latency.measure import measure_latency
            from anas.nn.static import StaticNet

            net = StaticNet(self.space, arch, self.num_classes)
            self.measured[arch] = measure_latency(net, arch.resolution, self.config, self.space.in_channels)
        return self.measured[arch]


def front_frame(result: SearchResult, measured: dict[int, float] | None = None):
    """The Pareto front in the table format, plus ``pred_acc1`` (``latency_ms``, ``acc1``)."""
    from anas.space.table import archs_to_frame

    archive, front = result.archive, result.front
    batch = result.genome.decode(archive.genes[front])
    frame = archs_to_frame(result.space, batch)
    frame["mflops"], frame["params_m"] = archive.mflops[front], archive.params_m[front]
    frame["pred_acc1"] = archive.pred_acc1[front]
    if not np.all(np.isnan(archive.latency_ms[front])):
        frame["latency_ms"] = archive.latency_ms[front]
    if measured:
        frame["acc1"] = [measured.get(int(i), np.nan) for i in front]
    return frame


def choose_best(result: SearchResult, measured: dict[int, float] | None = None) -> int:
    """The best predicted subnet, or the best measured one when some were verified."""
    if measured:
        return max(measured, key=measured.get)
    return result.best


def best_record(result: SearchResult, index: int, measured: dict[int, float] | None = None) -> dict:
    """``best.json``: an arch file that ``--arch`` accepts as it is, with its numbers."""
    record = result.arch(index).to_dict()
    record.update(space=result.space.name, mflops=float(result.archive.mflops[index]),
                  params_m=float(result.archive.params_m[index]), pred_acc1=float(result.archive.pred_acc1[index]))
    if not np.isnan(result.archive.latency_ms[index]):
        record["latency_ms"] = float(result.archive.latency_ms[index])
    if measured and index in measured:
        record["acc1"] = float(measured[index])
    return record


def plot_search(result: SearchResult, band: Band, path, best: int):
    """Predicted accuracy vs MFLOPs of everything evaluated, the front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anas.io import atomic_write

    archive = result.archive
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.axvspan(band.lo, band.hi, color="tab:green", alpha=0.08, label=f"band {band} MFLOPs")
    ax.scatter(archive.mflops, archive.pred_acc1, s=4, color="grey", alpha=0.35, label=f"evaluated ({len(archive.mflops)})")
    order = result.front[np.argsort(archive.mflops[result.front])]
    ax.plot(archive.mflops[order], archive.pred_acc1[order], "o-", color="tab:blue", markersize=4,
            label=f"Pareto front ({len(order)})")
    ax.scatter([archive.mflops[best]], [archive.pred_acc1[best]], marker="*", s=180, color="tab:red", zorder=5,
               label="best")
    ax.set_xlabel("MFLOPs")
    ax.set_ylabel("predicted top-1 (%)")
    ax.set_title(f"{result.space.name}: {result.strategy}, {result.calls} predictor calls")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
