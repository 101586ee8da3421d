"""Records of a trained run: its subnets evaluated (BN recalibrated) into ``RUN_DIR/records.csv``.

The file grows as subnets are evaluated and is rewritten atomically after each one, so an
interrupted ``anas predict-fit`` loses nothing and a rerun skips what is already there.
Under ``torchrun`` the ranks evaluate disjoint subnets and rank 0 writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from anas.errors import AnasError
from anas.evaluate.trained import TrainedRun
from anas.predict.records import read_records, record_frame, unrecorded
from anas.progress import progress_bars
from anas.space.arch import Arch
from anas.space.sampling import spread_sample
from anas.space.space import SearchSpace
from anas.space.table import write_table
from anas.train import distributed

RECORDS_FILE = "records.csv"


def collect_records(run: TrainedRun, samples: int, calib_batches: int | None = None, split: str = "auto",
                    seed: int = 0, progress: bool = False) -> tuple[Path, pd.DataFrame | None, int]:
    """Evaluate ``samples`` subnets spread over the MFLOPs range into ``RUN/records.csv``;
    subnets already there are skipped. Returns the path, the whole table (None on ranks
    other than 0) and how many subnets were evaluated now."""
    if samples < 2:
        raise AnasError("--samples must be at least 2 (the smallest and the largest subnet)")
    if calib_batches is not None and calib_batches < 1:
        raise AnasError(f"--calib-batches must be at least 1, got {calib_batches}")
    split = resolve_split(run, split)
    ctx = distributed.init_distributed(run.device.type)
    try:
        path = run.run_dir.path / RECORDS_FILE
        existing = read_records(path, run.space, run.num_classes) if path.exists() else None
        todo = unrecorded(spread_sample(run.space, samples, seed, run.num_classes), existing, run.space)

        def evaluate_chunk(chunk: list[Arch]) -> list[dict]:
            mine = chunk[ctx.rank] if ctx.rank < len(chunk) else None
            result = run.evaluate(mine, calib_batches, split).to_dict() if mine is not None else None
            return [r for r in distributed.gather_objects(result, ctx) if r is not None]

        with progress_bars(progress and ctx.is_main) as bars:
            bar = bars.add("evaluating subnets", len(todo))
            table = evaluate_into_records(path, run.space, todo, evaluate_chunk, existing, chunk_size=ctx.world_size,
                                          num_classes=run.num_classes, write=ctx.is_main, on_done=bar.advance)
        if not ctx.is_main:
            table = None  # rank 0 holds and writes the records
    finally:
        distributed.shutdown(ctx)
    return path, table, len(todo)


def resolve_split(run: TrainedRun, split: str) -> str:
    """``auto`` is the run's holdout when it has one, else its validation split."""
    if split == "auto":
        return "holdout" if run.config.holdout > 0 else "val"
    if split not in ("holdout", "val"):
        raise AnasError(f"unknown --split {split!r}: use auto, holdout or val")
    return split


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
