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

import numpy as np

from anas.arch import Arch, ArchBatch
from anas.space import SearchSpace, downsample, hidden_width, se_width


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


def batch_costs(space: SearchSpace, batch: ArchBatch, num_classes: int | None = None) -> Costs:
    """Multiply-accumulates and parameters of every subnet of ``batch``."""
    num_classes = space.num_classes if num_classes is None else num_classes
    n = len(batch)
    macs = np.zeros(n, dtype=np.int64)
    params = np.zeros(n, dtype=np.int64)

    def add(m, p, active=None):
        nonlocal macs, params
        if active is None:
            macs = macs + m
            params = params + p
        else:
            macs = macs + np.where(active, m, 0)
            params = params + np.where(active, p, 0)

    # First conv (with BN).
    first = space.first_conv
    size = downsample(batch.resolution, first.stride)
    channels = batch.width[:, 0]
    kk = first.kernel_size**2
    add(space.in_channels * channels * kk * size * size, space.in_channels * channels * kk + 2 * channels)

    for i, stage in enumerate(space.stages):
        c_out = batch.width[:, i + 1]
        kk = batch.kernel_size[:, i] ** 2
        expand_ratio = batch.expand_ratio[:, i]
        for j in range(max(stage.depths)):
            stride = stage.stride if j == 0 else 1
            c_in = channels if j == 0 else c_out
            out_size = downsample(size, stride)
            m, p = _block_costs(c_in, c_out, kk, expand_ratio, size, out_size, stage.se)
            add(m, p, None if j == 0 else batch.depth[:, i] > j)  # every stage has >= 1 block
            size = out_size
        channels = c_out

    # Head: 1x1 expansion (BN), global pool, 1x1 mix conv (no BN, no bias), classifier.
    expanded = space.head.expand_ratio * channels
    head_width = batch.width[:, -1]
    add(channels * expanded * size * size, channels * expanded + 2 * expanded)
    add(expanded * head_width, expanded * head_width)
    add(head_width * num_classes, head_width * num_classes + num_classes)
    return Costs(macs=macs, params=params)


def _block_costs(c_in, c_out, kk, expand_ratio, size, out_size, se: bool):
    """MACs and params of one inverted-residual block (arrays over subnets)."""
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
