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
from anas.space.search_space import SearchSpace
from anas.space.table_format import archs_to_frame, frame_to_archs, read_table, setting_columns, subnet_keys

RESULT_COLUMNS = ("acc1", "acc5", "loss")


def read_records(path: str | Path, space: SearchSpace, num_classes: int | None = None,
                 target: str = "acc1") -> pd.DataFrame:
    """A records table with the ``target`` column (``acc1`` by default: the measured top-1
    in percent), checked cell by cell; its cost columns are recomputed."""
    frame = read_table(path)
    batch = frame_to_archs(space, frame, str(path))
    if target not in frame.columns:
        what = " (the measured top-1 accuracy)" if target == "acc1" else ""
        raise TableError(f"{path}: missing column {target}{what}")
    values = pd.to_numeric(frame[target], errors="coerce")
    if values.isna().any():
        row = int(np.argmax(values.isna().to_numpy()))
        raise TableError(f"{path}: line {row + 2}, column {target}: {plain(frame[target].iloc[row])!r} is not a number")
    if target == "acc1":
        bad, expected = ~values.between(0, 100).to_numpy(), "a top-1 accuracy in percent (0 to 100)"
    else:
        bad, expected = ~np.isfinite(values.to_numpy(dtype=float)), "a finite number"
    if bad.any():  # NaN and infinities are outside too
        row = int(np.argmax(bad))
        raise TableError(f"{path}: line {row + 2}, column {target}: {plain(values.iloc[row])} is not {expected}")
    frame[target] = values
    costs = batch_costs(space, batch, num_classes)
    frame["mflops"], frame["params_m"] = costs.mflops, costs.params_m
    return frame


def record_frame(space: SearchSpace, archs: list[Arch], results: list[dict], num_classes: int | None = None) -> pd.DataFrame:
    batch = ArchBatch.from_archs(archs)
    frame = archs_to_frame(space, batch, batch_costs(space, batch, num_classes))
    for column in RESULT_COLUMNS:
        frame[column] = [r[column] for r in results]
    return frame


def merge_duplicates(space: SearchSpace, frame: pd.DataFrame, target: str = "acc1") -> tuple[pd.DataFrame, int]:
    """One row per distinct subnet, ``target`` averaged over its repeats (the first row's
    other columns kept), in first-seen order; and how many rows were merged away."""
    columns = setting_columns(space)
    keys = frame[columns].to_numpy(dtype=np.float64)
    _, first, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(frame):
        return frame, 0
    mean = pd.Series(frame[target].to_numpy(float)).groupby(group.ravel()).mean().to_numpy()
    order = np.sort(first)
    merged = frame.iloc[order].reset_index(drop=True)
    merged[target] = mean[group.ravel()[order]]
    return merged, len(frame) - len(merged)


def unrecorded(archs: list[Arch], frame: pd.DataFrame | None, space: SearchSpace) -> list[Arch]:
    """The subnets of ``archs`` that have no row in the records ``frame`` yet."""
    if frame is None:
        return list(archs)
    known = set(subnet_keys(space, frame))
    return [arch for arch, row in zip(archs, ArchBatch.from_archs(archs).matrix()) if tuple(row) not in known]
