"""The subnet table: the CSV format every command reads and writes.

One row per subnet, one column per setting (``resolution``, ``width_0``.., ``depth_0``..,
``kernel_size_0``.., ``expand_ratio_0``..; lengths from the space), then the cost columns
``mflops`` and ``params_m``, then whatever a command adds (``acc1``, ``pred_acc1``, ...).
See ``docs/table-format.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from anas.checks import plain
from anas.errors import ArchError, TableError
from anas.io import atomic_write, read_json
from anas.space.arch import LIST_SETTINGS, Arch, ArchBatch, arch_from_dict
from anas.space.cost import Costs
from anas.space.search_space import SearchSpace


def setting_columns(space: SearchSpace) -> list[str]:
    columns = ["resolution"]
    for setting in LIST_SETTINGS:
        columns += [f"{setting}_{i}" for i in range(len(space.choices(setting)))]
    return columns


def archs_to_frame(space: SearchSpace, batch: ArchBatch, costs: Costs | None = None) -> pd.DataFrame:
    """The table of ``batch``; with ``costs``, the ``mflops`` and ``params_m`` columns too."""
    data: dict[str, np.ndarray] = {"resolution": batch.resolution}
    for setting in LIST_SETTINGS:
        values = getattr(batch, setting)
        if setting == "expand_ratio" and np.all(values == np.round(values)):
            values = values.astype(np.int64)
        for i in range(values.shape[1]):
            data[f"{setting}_{i}"] = values[:, i]
    if costs is not None:
        data["mflops"] = costs.mflops
        data["params_m"] = costs.params_m
    return pd.DataFrame(data)


def subnet_keys(space: SearchSpace, frame: pd.DataFrame) -> list[tuple[float, ...]]:
    """Each row's settings as a tuple, the key by which tables are matched subnet to
    subnet (equal to the rows of :meth:`ArchBatch.matrix` for the same subnets)."""
    return [tuple(row) for row in frame[setting_columns(space)].to_numpy(dtype=np.float64)]


def frame_to_archs(space: SearchSpace, frame: pd.DataFrame, source: str = "table") -> ArchBatch:
    """Read the settings columns of a table back as subnets, checking every cell."""
    expected = setting_columns(space)
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise TableError(f"{source}: missing column(s) {', '.join(missing)} for space {space.name}")
    if frame.empty:
        raise TableError(f"{source}: the table has no rows")
    values = {}
    for column in expected:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        bad = numeric.isna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise TableError(
                f"{source}: line {row + 2}, column {column}: {plain(frame[column].iloc[row])!r} is not a number"
            )
        values[column] = numeric.to_numpy()
    for column, allowed in zip(expected, space.column_choices()):
        off = ~np.isin(values[column], np.asarray(allowed, dtype=np.float64))
        if off.any():
            row = int(np.argmax(off))
            allowed_text = ", ".join(f"{a:g}" for a in allowed)
            raise TableError(
                f"{source}: line {row + 2}, column {column}: {values[column][row]:g} is not a choice "
                f"of space {space.name} (allowed: {allowed_text})"
            )
    return ArchBatch.from_matrix(space, np.stack([values[column] for column in expected], axis=1))


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV table as a DataFrame; a missing or malformed file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"table {path} does not exist")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TableError(f"table {path} is not a valid CSV file: {reason}") from None


def read_archs(space: SearchSpace, path: str | Path) -> list[Arch]:
    """The subnets of a file: a table-format CSV, or a JSON list of subnets (or one subnet)
    as ``--arch`` takes them (``.json``); every subnet is checked against ``space``."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return list(frame_to_archs(space, read_table(path), str(path)))
    data = read_json(path, "subnet file", TableError)
    items = data if isinstance(data, list) else [data]
    if not items:
        raise TableError(f"subnet file {path} lists no subnets")
    archs = []
    for index, item in enumerate(items):
        try:
            archs.append(arch_from_dict(space, item))
        except ArchError as exc:
            raise ArchError(f"{path}, subnet {index + 1}: {exc}") from None
    return archs


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table atomically (temporary file, then rename)."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
