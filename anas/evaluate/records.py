"""Evaluation records: subnets of a trained supernet with their measured accuracy.

``RUN_DIR/records.csv`` is the table format (settings, ``mflops``, ``params_m``) plus
``acc1``, ``acc5`` and ``loss``. It grows as subnets are evaluated and is rewritten
atomically after each one, so an interrupted ``anas predict-fit`` loses nothing and a rerun
skips what is already there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from anas.space.arch import Arch, ArchBatch, concat_batches, largest_arch, sample_archs, sample_archs_by_size, smallest_arch
from anas.space.cost import batch_costs
from anas.errors import TableError
from anas.space.space import SearchSpace
from anas.space.table import archs_to_frame, frame_to_archs, read_table, setting_columns, write_table

RESULT_COLUMNS = ("acc1", "acc5", "loss")


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


def read_records(path: str | Path, space: SearchSpace, num_classes: int | None = None) -> pd.DataFrame:
    """A records table with ``acc1``, checked cell by cell; its cost columns are recomputed."""
    frame = read_table(path)
    batch = frame_to_archs(space, frame, str(path))
    if "acc1" not in frame.columns:
        raise TableError(f"{path}: missing column acc1 (the measured top-1 accuracy)")
    acc1 = pd.to_numeric(frame["acc1"], errors="coerce")
    if acc1.isna().any():
        row = int(np.argmax(acc1.isna().to_numpy()))
        raise TableError(f"{path}: line {row + 2}, column acc1: {frame['acc1'].iloc[row]!r} is not a number")
    frame["acc1"] = acc1
    costs = batch_costs(space, batch, num_classes)
    frame["mflops"], frame["params_m"] = costs.mflops, costs.params_m
    return frame


def record_frame(space: SearchSpace, archs: list[Arch], results: list[dict], num_classes: int | None = None) -> pd.DataFrame:
    batch = ArchBatch.from_archs(archs)
    frame = archs_to_frame(space, batch, batch_costs(space, batch, num_classes))
    for column in RESULT_COLUMNS:
        frame[column] = [r[column] for r in results]
    return frame


def settings_key(arch: Arch) -> tuple[float, ...]:
    """The settings of a subnet in table column order, for matching rows to subnets."""
    return tuple(float(v) for v in (arch.resolution, *arch.width, *arch.depth, *arch.kernel_size, *arch.expand_ratio))


def known_settings(frame: pd.DataFrame, space: SearchSpace) -> set[tuple[float, ...]]:
    return {tuple(float(v) for v in row) for row in frame[setting_columns(space)].to_numpy()}


def evaluate_into_records(path: str | Path, space: SearchSpace, todo: list[Arch],
                          evaluate_chunk: Callable[[list[Arch]], list[dict]], existing: pd.DataFrame | None,
                          chunk_size: int = 1, num_classes: int | None = None, write: bool = True,
                          on_done: Callable[[int], None] | None = None) -> pd.DataFrame | None:
    """Evaluate ``todo`` chunk by chunk, appending the rows to ``existing`` and rewriting
    ``path`` atomically after every chunk (when ``write``); returns the whole table."""
    table = existing
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start:start + chunk_size]
        rows = record_frame(space, chunk, evaluate_chunk(chunk), num_classes)
        table = rows if table is None else pd.concat([table, rows], ignore_index=True)
        if write:
            write_table(table, path)
        if on_done is not None:
            on_done(len(chunk))
    return table
