"""Subnets of a search space: one (``Arch``) or many at once (``ArchBatch``).

A subnet is written with the AttentiveNAS field names so that published configurations
load unchanged::

    {"resolution": 192, "width": [16, 16, 24, 32, 64, 112, 192, 216, 1792],
     "depth": [1, 3, 3, 3, 3, 3, 1], "kernel_size": [3, 3, 3, 3, 3, 3, 3],
     "expand_ratio": [1, 4, 4, 4, 4, 6, 6]}

``width`` has one value per width group (first conv, each stage, head); ``depth``,
``kernel_size`` and ``expand_ratio`` one per stage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anas.errors import ArchError
from anas.space.search_space import SearchSpace

LIST_SETTINGS = ("width", "depth", "kernel_size", "expand_ratio")
SETTINGS = ("resolution", *LIST_SETTINGS)


def _plain(value):
    """A choice as a plain Python number: ints stay ints, 4.0 becomes 4."""
    value = float(value) if not isinstance(value, (int, np.integer)) else int(value)
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True)
class Arch:
    """One subnet: its resolution and per-group / per-stage settings."""

    resolution: int
    width: tuple[int, ...]
    depth: tuple[int, ...]
    kernel_size: tuple[int, ...]
    expand_ratio: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": int(self.resolution),
            "width": [int(v) for v in self.width],
            "depth": [int(v) for v in self.depth],
            "kernel_size": [int(v) for v in self.kernel_size],
            "expand_ratio": [_plain(v) for v in self.expand_ratio],
        }


@dataclass
class ArchBatch:
    """N subnets as arrays (one row per subnet): the form the cost model vectorizes over."""

    resolution: np.ndarray  # (N,)
    width: np.ndarray  # (N, num_stages + 2)
    depth: np.ndarray  # (N, num_stages)
    kernel_size: np.ndarray  # (N, num_stages)
    expand_ratio: np.ndarray  # (N, num_stages), float

    def __len__(self) -> int:
        return int(self.resolution.shape[0])

    def __getitem__(self, i: int) -> Arch:
        return Arch(
            resolution=int(self.resolution[i]),
            width=tuple(int(v) for v in self.width[i]),
            depth=tuple(int(v) for v in self.depth[i]),
            kernel_size=tuple(int(v) for v in self.kernel_size[i]),
            expand_ratio=tuple(_plain(v) for v in self.expand_ratio[i]),
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def take(self, index) -> ArchBatch:
        """The subnets at ``index`` (an index array, mask or slice)."""
        return ArchBatch(**{name: getattr(self, name)[index] for name in SETTINGS})

    def matrix(self) -> np.ndarray:
        """The settings as floats, one row per subnet, one column per table column
        (``SearchSpace.column_choices`` order)."""
        return np.concatenate([self.resolution[:, None].astype(np.float64)]
                              + [getattr(self, setting).astype(np.float64) for setting in LIST_SETTINGS], axis=1)

    @classmethod
    def from_matrix(cls, space: SearchSpace, values: np.ndarray) -> ArchBatch:
        """The inverse of :meth:`matrix` (the values must be choices of ``space``)."""
        columns = space.columns
        parts = {setting: values[:, getattr(columns, setting)] for setting in LIST_SETTINGS}
        return cls(resolution=values[:, columns.resolution].astype(np.int64), width=parts["width"].astype(np.int64),
                   depth=parts["depth"].astype(np.int64), kernel_size=parts["kernel_size"].astype(np.int64),
                   expand_ratio=parts["expand_ratio"].astype(np.float64))

    def choice_index(self, space: SearchSpace) -> np.ndarray:
        """Each setting as the index of its value among its (sorted) choices, in column
        order: the integer genome of the search and the cost tables' look-up key."""
        values = self.matrix()
        return np.stack([np.searchsorted(np.asarray(choices, dtype=np.float64), values[:, j])
                         for j, choices in enumerate(space.column_choices())], axis=1)

    @classmethod
    def from_choice_index(cls, space: SearchSpace, index: np.ndarray) -> ArchBatch:
        columns = [np.asarray(choices, dtype=np.float64)[index[:, j]] for j, choices in enumerate(space.column_choices())]
        return cls.from_matrix(space, np.stack(columns, axis=1))

    @classmethod
    def from_archs(cls, archs: list[Arch]) -> ArchBatch:
        if not archs:
            raise ValueError("an ArchBatch needs at least one subnet")
        return cls(
            resolution=np.array([a.resolution for a in archs], dtype=np.int64),
            width=np.array([a.width for a in archs], dtype=np.int64),
            depth=np.array([a.depth for a in archs], dtype=np.int64),
            kernel_size=np.array([a.kernel_size for a in archs], dtype=np.int64),
            expand_ratio=np.array([a.expand_ratio for a in archs], dtype=np.float64),
        )


# ----------------------------------------------------------------------------------------
# Validation and parsing
# ----------------------------------------------------------------------------------------


def arch_from_dict(space: SearchSpace, data: Any) -> Arch:
    """Check a subnet description against the space; extra keys are ignored."""
    if not isinstance(data, dict):
        raise ArchError(f"a subnet must be a JSON object with the fields {', '.join(SETTINGS)}")
    missing = [key for key in SETTINGS if key not in data]
    if missing:
        raise ArchError(f"subnet is missing the field(s) {', '.join(missing)}")
    resolution = data["resolution"]
    if not _is_number(resolution) or resolution not in space.resolutions:
        raise ArchError(
            f"resolution = {resolution!r} is not a choice of space {space.name} "
            f"(allowed: {_choices_text(space.resolutions)})"
        )
    values = {}
    for setting in LIST_SETTINGS:
        choices = space.choices(setting)
        given = data[setting]
        if not isinstance(given, list) or len(given) != len(choices):
            raise ArchError(
                f"{setting} must be a list of {len(choices)} values for space {space.name}, "
                f"got {given!r}"
            )
        for index, (value, allowed) in enumerate(zip(given, choices)):
            if not _is_number(value) or value not in allowed:
                group = _group_name(space, setting, index)
                raise ArchError(
                    f"{setting}[{index}] = {value!r} ({group}) is not a choice of space "
                    f"{space.name} (allowed: {_choices_text(allowed)})"
                )
        values[setting] = tuple(_plain(v) for v in given)
    return Arch(resolution=int(resolution), **values)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _choices_text(choices) -> str:
    return ", ".join(str(_plain(c)) for c in choices)


def _group_name(space: SearchSpace, setting: str, index: int) -> str:
    if setting == "width":
        return space.width_group_names[index]
    return space.stages[index].name


def parse_arch(space: SearchSpace, spec: str, seed: int | None = None) -> Arch:
    """What ``--arch`` accepts: ``min``, ``max``, ``random``, a model name of the space
    (``a0``..``a6`` for attentive-nas), a JSON string or the path of a JSON file."""
    text = spec.strip()
    key = text.lower()
    if key == "min":
        return smallest_arch(space)
    if key == "max":
        return largest_arch(space)
    if key == "random":
        return sample_archs(space, 1, np.random.default_rng(seed))[0]
    if key in space.models:
        return arch_from_dict(space, space.models[key])
    if text.startswith("{"):
        return arch_from_dict(space, _load_json(text, "--arch"))
    path = Path(text)
    if path.is_file():
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ArchError(f"cannot read arch file {path}: {exc}") from None
        return arch_from_dict(space, _load_json(content, f"arch file {path}"))
    names = ", ".join(["min", "max", "random", *sorted(space.models)])
    raise ArchError(
        f"--arch {spec!r} is neither a JSON object, an existing JSON file, nor one of: {names}"
    )


def _load_json(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None


# ----------------------------------------------------------------------------------------
# Extremes and sampling
# ----------------------------------------------------------------------------------------


def smallest_arch(space: SearchSpace) -> Arch:
    return _extreme_arch(space, min)


def largest_arch(space: SearchSpace) -> Arch:
    return _extreme_arch(space, max)


def _extreme_arch(space: SearchSpace, pick) -> Arch:
    return Arch(
        resolution=pick(space.resolutions),
        **{setting: tuple(_plain(pick(c)) for c in space.choices(setting)) for setting in LIST_SETTINGS},
    )


def sample_archs(space: SearchSpace, n: int, rng: np.random.Generator) -> ArchBatch:
    """``n`` subnets, every setting drawn uniformly and independently from its choices."""
    return ArchBatch(
        resolution=_draw(rng, space.resolutions, n),
        width=np.stack([_draw(rng, c, n) for c in space.width_choices], axis=1),
        depth=np.stack([_draw(rng, c, n) for c in space.stage_choices("depth")], axis=1),
        kernel_size=np.stack([_draw(rng, c, n) for c in space.stage_choices("kernel_size")], axis=1),
        expand_ratio=np.stack(
            [_draw(rng, c, n, np.float64) for c in space.stage_choices("expand_ratio")], axis=1
        ),
    )


def _draw(rng: np.random.Generator, choices, n: int, dtype=np.int64) -> np.ndarray:
    return np.asarray(choices, dtype=dtype)[rng.integers(0, len(choices), size=n)]


def sample_archs_by_size(space: SearchSpace, n: int, rng: np.random.Generator) -> ArchBatch:
    """``n`` subnets spread over the whole cost range, the extremes included.

    Uniform sampling almost never yields subnets near the smallest or the largest (the
    smallest ``attentive-nas`` subnet is one in 4e11). Here each subnet draws a size
    ``t`` in [0, 1] and a spread ``s``; every setting takes the choice nearest to
    ``t * (choices - 1)`` plus Gaussian noise of ``s`` choices (choices are sorted, and a
    larger choice always costs more). Used to cover rare MFLOPs bins and narrow bands.
    """
    size = rng.random(n)
    spread = rng.uniform(0.0, 1.0, n)

    def draw(choices, dtype=np.int64) -> np.ndarray:
        m = len(choices)
        index = np.rint(size * (m - 1) + rng.normal(0.0, 1.0, n) * spread).astype(np.int64)
        return np.asarray(choices, dtype=dtype)[np.clip(index, 0, m - 1)]

    return ArchBatch(
        resolution=draw(space.resolutions),
        width=np.stack([draw(c) for c in space.width_choices], axis=1),
        depth=np.stack([draw(c) for c in space.stage_choices("depth")], axis=1),
        kernel_size=np.stack([draw(c) for c in space.stage_choices("kernel_size")], axis=1),
        expand_ratio=np.stack([draw(c, np.float64) for c in space.stage_choices("expand_ratio")], axis=1),
    )


def concat_batches(batches: list[ArchBatch]) -> ArchBatch:
    return ArchBatch(**{name: np.concatenate([getattr(b, name) for b in batches]) for name in SETTINGS})
