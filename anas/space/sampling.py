"""Choosing subnets: evenly spread over a space's MFLOPs range, or a second subnet that
differs from a first in every setting."""

from __future__ import annotations

import numpy as np

from anas.space.arch import (
    Arch,
    ArchBatch,
    concat_batches,
    largest_arch,
    sample_archs,
    sample_archs_by_size,
    smallest_arch,
)
from anas.space.cost import batch_costs
from anas.space.search_space import SearchSpace


def spread_sample(space: SearchSpace, n: int, seed: int = 0, num_classes: int | None = None) -> list[Arch]:
    """``n`` distinct subnets spread evenly over the space's whole MFLOPs range: the smallest,
    the largest, then for MFLOPs targets that fill the range ever more finely (a van der
    Corput sequence), the nearest unused subnet of a seeded pool of uniform and size-spread
    samples. The first ``n`` of a larger request are the same subnets (up to 4,000), so
    asking for more later only adds subnets."""
    small, large = smallest_arch(space), largest_arch(space)
    if n <= 2:
        return [small, large][:n]
    rng = np.random.default_rng(seed)
    pool_size = max(20_000, 5 * n)
    pool = concat_batches([sample_archs(space, pool_size, rng), sample_archs_by_size(space, pool_size, rng)])
    mflops = batch_costs(space, pool, num_classes).mflops
    low, high = batch_costs(space, ArchBatch.from_archs([small, large]), num_classes).mflops
    chosen: list[Arch] = [small, large]
    seen = {small, large}
    order = np.argsort(mflops, kind="stable")
    sorted_mflops = mflops[order]
    i = 0
    while len(chosen) < n:
        i += 1
        target = low + (high - low) * _van_der_corput(i)
        for offset in _outward(int(np.searchsorted(sorted_mflops, target)), len(order)):
            arch = pool[int(order[offset])]
            if arch not in seen:
                seen.add(arch)
                chosen.append(arch)
                break
    return chosen


def _van_der_corput(i: int) -> float:
    """The i-th point of the base-2 van der Corput sequence: 0.5, 0.25, 0.75, 0.125, ..."""
    value, denominator = 0.0, 1.0
    while i:
        denominator *= 2
        i, bit = divmod(i, 2)
        value += bit / denominator
    return value


def _outward(start: int, size: int):
    """Indices start, start-1, start+1, start-2, ... within [0, size)."""
    for step in range(size):
        for index in (start - step, start + step) if step else (start,):
            if 0 <= index < size:
                yield index


def differing_arch(space: SearchSpace, arch: Arch, rng: np.random.Generator) -> Arch:
    """A subnet that differs from ``arch`` in every setting that has another choice (each
    redrawn uniformly among the other choices): Pi-NAS's second path of a pair."""
    current = ArchBatch.from_archs([arch]).choice_index(space)[0]
    sizes = np.array([len(choices) for choices in space.column_choices()])
    shift = np.where(sizes > 1, rng.integers(1, np.maximum(sizes, 2)), 0)  # 1..size-1: never the same choice
    return ArchBatch.from_choice_index(space, ((current + shift) % sizes)[None])[0]
