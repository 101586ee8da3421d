"""Records of a trained run: its subnets evaluated (BN recalibrated) into ``RUN_DIR/records.csv``.

The file grows as subnets are evaluated and is rewritten atomically after each one, so an
interrupted ``anas predict-fit`` loses nothing and a rerun skips what is already there.
Under ``torchrun`` the ranks evaluate disjoint subnets and rank 0 writes; separate
processes writing one file merge their rows under a lock.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from anas.checks import SPREAD_SAMPLE_BYTES, check_at_least, check_calib_batches, check_memory, check_seed, plain
from anas.errors import AnasError
from anas.evaluate.trained import TrainedRun
from anas.io import file_lock
from anas.predict.records import read_records, record_frame, unrecorded
from anas.progress import progress_bars
from anas.runtime.distributed import gather_objects, init_distributed, process_group
from anas.space.arch import Arch
from anas.space.sampling import spread_sample
from anas.space.search_space import SearchSpace
from anas.space.table_format import subnet_keys, write_table

RECORDS_FILE = "records.csv"


def collect_records(run: TrainedRun, samples: int, calib_batches: int | None = None, split: str = "auto",
                    seed: int = 0, progress: bool = False) -> tuple[Path, pd.DataFrame | None, int]:
    """Evaluate ``samples`` subnets spread over the MFLOPs range into ``RUN/records.csv``;
    subnets already there are skipped. Returns the path, the whole table (None on ranks
    other than 0) and how many subnets were evaluated now.

    Each row records how it was made (split, calibration batches, checkpoint); rows made
    otherwise are refused, never mixed in. Several processes may fill one file at once
    (different seeds, say): each write merges under a lock with what is on disk."""
    check_record_request(samples, calib_batches, seed)
    split = resolve_split(run, split)
    made = {"split": split, "calib_batches": calib_batches or run.config.calib_batches,
            "checkpoint": run.checkpoint_id}
    with process_group(init_distributed(run.device.type)) as ctx:
        path = run.run_dir.path / RECORDS_FILE
        existing = read_run_records(path, run, made) if path.exists() else None
        todo = unrecorded(spread_sample(run.space, samples, seed, run.num_classes), existing, run.space)

        def evaluate_chunk(chunk: list[Arch]) -> list[dict]:
            mine = chunk[ctx.rank] if ctx.rank < len(chunk) else None
            result = run.evaluate(mine, calib_batches, split).to_dict() if mine is not None else None
            return [r for r in gather_objects(result, ctx) if r is not None]

        def merge_into_file(rows: pd.DataFrame) -> pd.DataFrame:
            with file_lock(path):  # another process may have added rows since
                on_disk = read_run_records(path, run, made) if path.exists() else None
                table = rows if on_disk is None else pd.concat(
                    [on_disk, rows[_new_rows(run.space, on_disk, rows)]], ignore_index=True)
                write_table(table, path)
            return table

        with progress_bars(progress and ctx.is_main) as bars:
            bar = bars.add("evaluating subnets", len(todo))
            table = existing
            for start in range(0, len(todo), ctx.world_size):
                chunk = todo[start:start + ctx.world_size]
                rows = record_frame(run.space, chunk, evaluate_chunk(chunk), run.num_classes)
                for column, value in made.items():
                    rows[column] = value
                if ctx.is_main:
                    table = merge_into_file(rows)
                bar.advance(len(chunk))
        if not ctx.is_main:
            table = None  # rank 0 holds and writes the records
    return path, table, len(todo)


def check_record_request(samples: int, calib_batches: int | None, seed: int) -> None:
    """What ``collect_records`` checks before any work."""
    check_at_least(samples, 2, "--samples", " (the smallest and the largest subnet)")
    check_calib_batches(calib_batches)
    check_seed(seed)
    check_memory(samples * SPREAD_SAMPLE_BYTES, "--samples", samples)


def read_run_records(path: Path, run: TrainedRun, made: dict) -> pd.DataFrame:
    """The records of a run, which must have been made as ``made`` says (rows of files
    written before anas recorded this are taken as they are)."""
    table = read_records(path, run.space, run.num_classes)
    for column, value in made.items():
        if column not in table.columns:
            continue
        differs = [other for other in table[column].dropna() if not _same(other, value)]
        if differs:
            other = differs[0]
            raise AnasError(f"{path} holds subnets evaluated with {column} {plain(other)}, not {value} as now: "
                            f"move it away to evaluate anew (rows made differently are never mixed)")
    return table


def _same(read: object, value: object) -> bool:
    """Whether a cell read back from the CSV holds ``value`` (numbers compare as numbers: a
    column with empty cells of older rows reads 1 as 1.0)."""
    if isinstance(value, (int, float)):
        try:
            return float(read) == float(value)
        except (TypeError, ValueError):
            return False
    return str(read) == str(value)


def _new_rows(space: SearchSpace, on_disk: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """Which of ``rows`` hold a subnet that ``on_disk`` lacks."""
    known = set(subnet_keys(space, on_disk))
    return np.array([key not in known for key in subnet_keys(space, rows)], dtype=bool)


def resolve_split(run: TrainedRun, split: str) -> str:
    """``auto`` is the run's holdout when it has one, else its validation split."""
    if split == "auto":
        return "holdout" if run.config.holdout > 0 else "val"
    if split not in ("holdout", "val"):
        raise AnasError(f"unknown --split {split!r}: use auto, holdout or val")
    if split == "holdout" and not run.config.holdout > 0:
        raise AnasError(f"--split holdout: run {run.run_dir.path} was trained without --holdout, so it has no "
                        f"holdout split")
    return split
