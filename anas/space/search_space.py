"""Search spaces as data: the choices of an AttentiveNAS-family supernet, read from YAML.

A space is a first convolution, a run of stages of MobileNetV3 inverted-residual blocks and
a MobileNetV3 head. A subnet picks one resolution, one width per layer group (first conv,
each stage, head), and one depth, kernel size and expand ratio per stage. The built-in
spaces live in ``anas/spaces/*.yaml``; a user's YAML file with the same schema works too
(read and written by :mod:`anas.space.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

ACTIVATIONS = ("swish", "relu", "hswish")


@dataclass(frozen=True)
class FirstConv:
    widths: tuple[int, ...]
    kernel_size: int = 3
    stride: int = 2


@dataclass(frozen=True)
class Stage:
    name: str
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[float, ...]
    se: bool = False
    stride: int = 1
    activation: str | None = None  # None: the space's activation (resolved by SearchSpace)


@dataclass(frozen=True)
class Head:
    widths: tuple[int, ...]
    expand_ratio: int = 6


@dataclass(frozen=True)
class SearchSpace:
    """The choices of a search space. ``models`` maps names (``a0``..) to published subnets."""

    name: str
    num_classes: int
    resolutions: tuple[int, ...]
    first_conv: FirstConv
    stages: tuple[Stage, ...]
    head: Head
    activation: str = "swish"
    dropout: float = 0.2
    in_channels: int = 3
    models: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)

    def __post_init__(self):
        # a stage without an activation of its own uses the space's
        stages = tuple(s if s.activation else replace(s, activation=self.activation) for s in self.stages)
        object.__setattr__(self, "stages", stages)

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def width_choices(self) -> tuple[tuple[int, ...], ...]:
        """Width choices per width index: first conv, each stage, head."""
        return (self.first_conv.widths, *(s.widths for s in self.stages), self.head.widths)

    @property
    def width_group_names(self) -> tuple[str, ...]:
        return ("first_conv", *(s.name for s in self.stages), "head")

    def stage_choices(self, setting: str) -> tuple[tuple, ...]:
        """Per-stage choices of ``depth``, ``kernel_size`` or ``expand_ratio``."""
        attr = {"depth": "depths", "kernel_size": "kernel_sizes", "expand_ratio": "expand_ratios"}[setting]
        return tuple(getattr(s, attr) for s in self.stages)

    def choices(self, setting: str) -> tuple[tuple, ...]:
        """Choices of every position of a list-valued setting (``width``, ``depth``, ...)."""
        return self.width_choices if setting == "width" else self.stage_choices(setting)

    def column_choices(self) -> list[tuple]:
        """The choices of every setting in the table format's column order (:attr:`columns`)."""
        return [self.resolutions, *self.width_choices, *self.stage_choices("depth"),
                *self.stage_choices("kernel_size"), *self.stage_choices("expand_ratio")]

    @property
    def columns(self) -> ColumnLayout:
        """Where each setting sits among a subnet's columns (tables, genomes, choice indices)."""
        return ColumnLayout(self.num_stages)


@dataclass(frozen=True)
class ColumnLayout:
    """The column order of a subnet's settings, the one place it is spelled out (tables,
    genomes, features, choice indices and the cost and latency look-ups follow it): the
    resolution, each width (first conv, each stage, head), each stage's depth, each
    kernel size, each expand ratio."""

    num_stages: int

    @property
    def resolution(self) -> int:
        return 0

    @property
    def width(self) -> slice:
        return slice(1, self.num_stages + 3)

    @property
    def depth(self) -> slice:
        return self._stage_setting(0)

    @property
    def kernel_size(self) -> slice:
        return self._stage_setting(1)

    @property
    def expand_ratio(self) -> slice:
        return self._stage_setting(2)

    def _stage_setting(self, k: int) -> slice:
        start = self.num_stages + 3 + k * self.num_stages
        return slice(start, start + self.num_stages)

    def stage(self, i: int) -> tuple[int, int, int, int]:
        """The columns of stage ``i``'s width, depth, kernel size and expand ratio."""
        return (self.width.start + 1 + i, self.depth.start + i, self.kernel_size.start + i, self.expand_ratio.start + i)

    @property
    def first_conv_width(self) -> int:
        return self.width.start

    @property
    def head_width(self) -> int:
        return self.width.stop - 1


# ----------------------------------------------------------------------------------------
# Shared width rules (used by the cost model and by the networks: one place for both).
# ----------------------------------------------------------------------------------------


def make_divisible(value, divisor: int = 8):
    """Nearest multiple of ``divisor`` (at least ``divisor``), plus ``divisor`` when that
    falls below 90 % of ``value``. Works elementwise on arrays; returns int64."""
    v = np.asarray(value, dtype=np.float64)
    rounded = np.maximum(divisor, np.floor((v + divisor / 2) / divisor) * divisor)
    rounded = np.where(rounded < 0.9 * v, rounded + divisor, rounded)
    return rounded.astype(np.int64)


def hidden_width(c_in, expand_ratio):
    """Channels inside an inverted-residual block; blocks with expand ratio 1 keep ``c_in``."""
    c_in = np.asarray(c_in)
    expand_ratio = np.asarray(expand_ratio, dtype=np.float64)
    expanded = make_divisible(np.round(c_in * expand_ratio), 8)
    return np.where(expand_ratio == 1, c_in, expanded).astype(np.int64)


def se_width(hidden):
    """Channels inside a squeeze-and-excitation module."""
    return make_divisible(np.asarray(hidden) // 4, 8)


def downsample(size, stride: int):
    """Spatial size after a layer of the given stride (ceil division)."""
    return -(-np.asarray(size) // stride)


def stage_input_sizes(space: SearchSpace) -> list[list[int]]:
    """``sizes[i][r]``: the input size of stage ``i`` (``i = num_stages``: the head's) at
    resolution index ``r``."""
    size = [int(downsample(res, space.first_conv.stride)) for res in space.resolutions]
    sizes = [size]
    for stage in space.stages:
        size = [int(downsample(s, stage.stride)) for s in size]
        sizes.append(size)
    return sizes
