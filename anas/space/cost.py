"""The analytic cost model: MFLOPs and parameters of subnets, vectorized over many at once.

MFLOPs follow the convention of the NAS literature: multiply-accumulates of convolutions and
linear layers only, in millions. A convolution costs ``c_in * c_out * k * k * H_out * W_out /
groups``, a linear layer ``in * out``; BatchNorm, activations, biases and pooling are free.
Parameters count every trainable tensor of the static network (weights, biases, BN affine).

These are pure functions of (space, subnets, number of classes); they agree exactly with
what ptflops counts on the built static network (see ``tests/test_cost.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from anas.space.arch import Arch, ArchBatch, largest_arch, smallest_arch
from anas.space.search_space import SearchSpace, downsample, hidden_width, se_width


@dataclass(frozen=True)
class Costs:
    """Costs of N subnets: ``macs`` and ``params`` as exact integers, per subnet."""

    macs: np.ndarray
    params: np.ndarray

    @property
    def mflops(self) -> np.ndarray:
        return self.macs / 1e6

    @property
    def params_m(self) -> np.ndarray:
        return self.params / 1e6


def direct_costs(space: SearchSpace, batch: ArchBatch, num_classes: int | None = None) -> Costs:
    """The reference: every layer's multiply-accumulates and parameters, summed (vectorized
    over subnets). ``batch_costs`` gives the same numbers from precomputed tables."""
    num_classes = space.num_classes if num_classes is None else num_classes
    first = space.first_conv
    size = downsample(batch.resolution, first.stride)
    channels = batch.width[:, 0]
    macs, params = stem_costs(space.in_channels, channels, first.kernel_size**2, size)
    for i, stage in enumerate(space.stages):
        m, p, size = _stage_costs(stage, size, channels, batch.width[:, i + 1], batch.kernel_size[:, i],
                                  batch.expand_ratio[:, i], batch.depth[:, i])
        macs, params = macs + m, params + p
        channels = batch.width[:, i + 1]
    m, p = head_costs(space.head.expand_ratio, size, channels, batch.width[:, -1], num_classes)
    return Costs(macs=(macs + m).astype(np.int64), params=(params + p).astype(np.int64))


def _stage_costs(stage, size, c_in, c_out, kernel_size, expand_ratio, depth):
    """MACs, params and output size of a stage's active blocks (arrays over subnets)."""
    macs = np.zeros(np.broadcast(size, c_in, c_out, kernel_size, expand_ratio, depth).shape, dtype=np.int64)
    params = np.zeros_like(macs)
    kk = np.asarray(kernel_size) ** 2
    for j in range(max(stage.depths)):
        out_size = downsample(size, stage.stride if j == 0 else 1)
        m, p = block_costs(c_in if j == 0 else c_out, c_out, kk, expand_ratio, size, out_size, stage.se)
        active = np.asarray(depth) > j  # every stage has at least one block
        macs, params = macs + np.where(active, m, 0), params + np.where(active, p, 0)
        size = out_size
    return macs, params, size


def stem_costs(in_channels, channels, kk, out_size):
    """MACs and params of the first conv (with its BN) of ``channels`` filters of ``kk``
    (the kernel size squared) taps, over an output of ``out_size`` squared."""
    return in_channels * channels * kk * out_size * out_size, in_channels * channels * kk + 2 * channels


def head_costs(expand_ratio, size, channels, head_width, num_classes):
    """MACs and params of the head on a ``size`` x ``size`` input: 1x1 expansion (BN),
    global pool, 1x1 mix conv (no BN, no bias), linear classifier."""
    expanded = expand_ratio * channels
    macs = channels * expanded * size * size + expanded * head_width + head_width * num_classes
    params = channels * expanded + 2 * expanded + expanded * head_width + head_width * num_classes + num_classes
    return macs, params


class _CostTables:
    """Costs of every (resolution, first-conv width), every stage configuration and every
    head configuration, computed once with the reference formulas; a subnet's cost is then
    a handful of table look-ups."""

    def __init__(self, space: SearchSpace, num_classes: int):
        self.space = space
        res = np.asarray(space.resolutions, dtype=np.float64)  # float64: no silent int64 overflow
        first = space.first_conv
        size = downsample(res, first.stride)
        w0 = np.asarray(first.widths, dtype=np.float64)
        kk = first.kernel_size**2
        grid_res, grid_w = np.meshgrid(np.arange(len(res)), w0, indexing="ij")
        self.first = np.stack(stem_costs(space.in_channels, grid_w, kk, size[grid_res]))
        self.stages = []
        widths = space.width_choices
        for i, stage in enumerate(space.stages):
            axes = [np.arange(len(res)), np.asarray(widths[i], dtype=np.float64),
                    np.asarray(widths[i + 1], dtype=np.float64), np.asarray(stage.kernel_sizes, dtype=np.float64),
                    np.asarray(stage.expand_ratios, dtype=np.float64), np.asarray(stage.depths)]
            r, c_in, c_out, k, e, d = np.meshgrid(*axes, indexing="ij")
            m, p, _ = _stage_costs(stage, size[r], c_in, c_out, k, e, d)
            self.stages.append(np.stack([m, p]))
            size = downsample(size, stage.stride)
        r, c, h = np.meshgrid(np.arange(len(res)), np.asarray(widths[-2], dtype=np.float64),
                              np.asarray(widths[-1], dtype=np.float64), indexing="ij")
        self.head = np.stack(head_costs(space.head.expand_ratio, size[r], c, h, num_classes))

    def costs(self, batch: ArchBatch) -> Costs:
        return self.costs_from_index(batch.choice_index(self.space))

    def costs_from_index(self, index: np.ndarray) -> Costs:
        """Costs of subnets given as choice indices in table column order."""
        columns = self.space.columns
        res, width, depth = index[:, columns.resolution], index[:, columns.width], index[:, columns.depth]
        kernel, expand = index[:, columns.kernel_size], index[:, columns.expand_ratio]
        macs, params = _lookup(self.first, res, width[:, 0])
        for i in range(len(self.stages)):
            m, p = _lookup(self.stages[i], res, width[:, i], width[:, i + 1], kernel[:, i], expand[:, i], depth[:, i])
            macs, params = macs + m, params + p
        m, p = _lookup(self.head, res, width[:, -2], width[:, -1])
        return Costs(macs=(macs + m).astype(np.int64), params=(params + p).astype(np.int64))


def _lookup(table: np.ndarray, *index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MACs, params) entries of a stacked [2, ...] table at the given choice indices."""
    flat = np.ravel_multi_index(index, table.shape[1:])
    return table[0].ravel().take(flat), table[1].ravel().take(flat)


MAX_MACS = 2**53
"""Costs are counted exactly up to 2**53 multiply-accumulates (9e9 MFLOPs): the tables
are computed in float64, exact for integers that size, and stored as int64."""


def check_cost_range(space: SearchSpace) -> None:
    """Refuse (ValueError) a space whose costs cannot be counted exactly: a subnet with
    more than ``MAX_MACS`` multiply-accumulates or parameters, with the space's classes."""
    tables = _tables(space, space.num_classes)  # cached: the cost model uses the same tables
    most = sum(float(np.max(table, axis=tuple(range(1, table.ndim))).max())
               for table in (tables.first, *tables.stages, tables.head))
    if not most < MAX_MACS:
        raise ValueError(f"its largest subnet would cost about {most / 1e6:.3g} MFLOPs or params, beyond what "
                         f"anas counts exactly ({MAX_MACS / 1e6:.3g}): the sizes are out of range")


@lru_cache(maxsize=32)
def _tables(space: SearchSpace, num_classes: int) -> _CostTables:
    return _CostTables(space, num_classes)


def index_costs(space: SearchSpace, index: np.ndarray, num_classes: int | None = None) -> Costs:
    """Costs of subnets given as choice indices (one column per setting, in the table
    format's column order): what the search's integer genomes are."""
    num_classes = space.num_classes if num_classes is None else num_classes
    return _tables(space, num_classes).costs_from_index(np.asarray(index, dtype=np.int64))


def batch_costs(space: SearchSpace, batch: ArchBatch, num_classes: int | None = None) -> Costs:
    """Multiply-accumulates and parameters of every subnet of ``batch`` (whose settings are
    choices of ``space``), by table look-up; equal to ``direct_costs``."""
    num_classes = space.num_classes if num_classes is None else num_classes
    return _tables(space, num_classes).costs(batch)


def block_costs(c_in, c_out, kk, expand_ratio, size, out_size, se: bool):
    """MACs and params of one inverted-residual block (arrays over subnets); ``kk`` is
    the kernel size squared."""
    hidden = hidden_width(c_in, expand_ratio)
    has_expand = expand_ratio != 1
    macs = np.where(has_expand, c_in * hidden * size * size, 0)
    params = np.where(has_expand, c_in * hidden + 2 * hidden, 0)
    macs = macs + hidden * kk * out_size * out_size  # depthwise
    params = params + hidden * kk + 2 * hidden
    if se:
        squeeze = se_width(hidden)
        macs = macs + 2 * hidden * squeeze
        params = params + 2 * hidden * squeeze + hidden + squeeze
    macs = macs + hidden * c_out * out_size * out_size  # projection
    params = params + hidden * c_out + 2 * c_out
    has_shortcut_conv = c_in != c_out
    macs = macs + np.where(has_shortcut_conv, c_in * c_out * out_size * out_size, 0)
    params = params + np.where(has_shortcut_conv, c_in * c_out, 0)
    return macs, params


def arch_costs(space: SearchSpace, arch: Arch, num_classes: int | None = None) -> tuple[float, float]:
    """(MFLOPs, params in millions) of one subnet."""
    costs = batch_costs(space, ArchBatch.from_archs([arch]), num_classes)
    return float(costs.mflops[0]), float(costs.params_m[0])


def mflops_range(space: SearchSpace) -> tuple[float, float]:
    """MFLOPs of the space's smallest and largest subnets."""
    return arch_costs(space, smallest_arch(space))[0], arch_costs(space, largest_arch(space))[0]
