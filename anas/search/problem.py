"""The search problem: subnets as integer genomes, scored by a predictor, kept inside the
budgets' bands.

Every strategy starts from subnets sampled inside the MFLOPs band and repairs every child
back into it, so a narrow band next to the smallest subnet is searched as quickly as a
wide one, and a band no subnet can meet is refused at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from anas.errors import AnasError
from anas.predict.kinds import Predictor
from anas.progress import Bar
from anas.space.arch import Arch, ArchBatch, largest_arch, sample_archs, sample_archs_by_size, smallest_arch
from anas.space.cost import Costs, batch_costs, index_costs
from anas.space.search_space import SearchSpace

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
        self.sizes = np.array([len(c) for c in space.column_choices()], dtype=np.int64)

    @property
    def length(self) -> int:
        return len(self.sizes)

    def decode(self, genes: np.ndarray) -> ArchBatch:
        return ArchBatch.from_choice_index(self.space, genes)

    def encode(self, batch: ArchBatch) -> np.ndarray:
        return batch.choice_index(self.space)

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
    progress: Bar | None = None  # advanced by every predictor call
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

    def in_bands(self, costs: Costs) -> np.ndarray:
        """Which subnets of ``costs`` lie inside the MFLOPs band and the params band (when
        there is one): the bounds known without timing anything."""
        inside = self.flops.contains(costs.mflops)
        if self.params is not None:
            inside &= self.params.contains(costs.params_m)
        return inside

    def genes_in_bands(self, genes: np.ndarray) -> np.ndarray:
        """:meth:`in_bands` of genomes."""
        return self.in_bands(index_costs(self.space, genes, self.num_classes))

    def evaluate(self, genes: np.ndarray) -> Evaluated:
        """Predicted accuracy, costs and feasibility of ``genes``; counts predictor calls and
        keeps every distinct subnet in the archive."""
        genes = np.asarray(genes, dtype=np.int64)
        batch = self.genome.decode(genes)
        costs = index_costs(self.space, genes, self.num_classes)
        pred = self.predictor.predict(batch)
        self.calls += len(genes)
        if self.progress is not None:
            self.progress.advance(len(genes))
        feasible = self.in_bands(costs)
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

    def repair(self, genes: np.ndarray, rng: np.random.Generator, max_steps: int = 300,
               movable: np.ndarray | None = None) -> np.ndarray:
        """Move every genome into the MFLOPs band one choice at a time: a random setting one
        choice down while above the band, up while below, never jumping over the band.
        ``movable`` (a boolean mask over the genome's columns; default: all) limits the
        settings that may change; a genome these cannot bring into the band stays outside."""
        genes = np.array(genes, dtype=np.int64)
        allowed = np.ones(self.genome.length, dtype=bool) if movable is None else np.asarray(movable, dtype=bool)
        if allowed.shape != (self.genome.length,):
            raise ValueError(f"movable has shape {allowed.shape}, not ({self.genome.length},)")
        mflops = self.mflops(genes)
        for _ in range(max_steps):
            above, below = mflops > self.flops.hi, mflops < self.flops.lo
            rows = np.flatnonzero(above | below)
            if len(rows) == 0:
                break
            step = np.where(above[rows], -1, 1)
            target = genes[rows] + step[:, None]
            can_move = (target >= 0) & (target < self.genome.sizes) & allowed
            scores = np.where(can_move, rng.random(can_move.shape), -1.0)
            gene = scores.argmax(axis=1)
            ok = can_move[np.arange(len(rows)), gene]
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
