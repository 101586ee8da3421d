"""Evaluation records: subnets with their measured accuracy, the data predictors learn from.

A records table is the table format (settings, ``mflops``, ``params_m``) plus ``acc1``
and, when anas measured it, ``acc5`` and ``loss`` (``RUN_DIR/records.csv``, written by
``anas predict-fit``; or any CSV of the same form).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from anas.checks import plain
from anas.errors import TableError
from anas.space.arch import Arch, ArchBatch
from anas.space.cost import batch_costs
from anas.space.space import SearchSpace
from anas.space.table import archs_to_frame, frame_to_archs, read_table, setting_columns, subnet_keys

RESULT_COLUMNS = ("acc1", "acc5", "loss")


def read_records(path: str | Path, space: SearchSpace, num_classes: int | None = None) -> pd.DataFrame:
    """A records table with ``acc1``, checked cell by cell; its cost columns are recomputed."""
    frame = read_table(path)
    batch = frame_to_archs(space, frame, str(path))
    if "acc1" not in frame.columns:
        raise TableError(f"{path}: missing column acc1 (the measured top-1 accuracy)")
    acc1 = pd.to_numeric(frame["acc1"], errors="coerce")
    if acc1.isna().any():
        row = int(np.argmax(acc1.isna().to_numpy()))
        raise TableError(f"{path}: line {row + 2}, column acc1: {plain(frame['acc1'].iloc[row])!r} is not a number")
    bad = ~acc1.between(0, 100).to_numpy()  # NaN and infinities are outside too
    if bad.any():
        row = int(np.argmax(bad))
        raise TableError(f"{path}: line {row + 2}, column acc1: {plain(acc1.iloc[row])} is not a top-1 accuracy "
                         f"in percent (0 to 100)")
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


def merge_duplicates(space: SearchSpace, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per distinct subnet, ``acc1`` averaged over its repeats (the first row's
    other columns kept), in first-seen order; and how many rows were merged away."""
    columns = setting_columns(space)
    keys = frame[columns].to_numpy(dtype=np.float64)
    _, first, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(frame):
        return frame, 0
    mean_acc1 = pd.Series(frame["acc1"].to_numpy(float)).groupby(group.ravel()).mean().to_numpy()
    order = np.sort(first)
    merged = frame.iloc[order].reset_index(drop=True)
    merged["acc1"] = mean_acc1[group.ravel()[order]]
    return merged, len(frame) - len(merged)


def unrecorded(archs: list[Arch], frame: pd.DataFrame | None, space: SearchSpace) -> list[Arch]:
    """The subnets of ``archs`` that have no row in the records ``frame`` yet."""
    if frame is None:
        return list(archs)
    known = set(subnet_keys(space, frame))
    return [arch for arch, row in zip(archs, ArchBatch.from_archs(archs).matrix()) if tuple(row) not in known]
