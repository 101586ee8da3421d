"""The BN-NAS indicator (Chen et al., ICCV 2021): a subnet scored by the BatchNorm scales
of the supernet, with no forward pass.

Each block's last BN (the one after the 1x1 projection conv) scales every output channel
by its gamma. A block whose channels carry little weight contributes little, so the
indicator of a block is the mean |gamma| over its active output channels, and a subnet's
score is the sum (or mean) over its active blocks. Beta and the running statistics are
not used.

Scoring is two steps: :func:`indicator_table` reads the supernet once into an array of
per-block, per-operation, per-width means, and :func:`indicator_scores` gathers and sums
it for a whole :class:`~anas.space.arch.ArchBatch`. With a private BN per (kernel size,
expand ratio) choice (``Supernet(..., private_bn=True)``) the operations are told apart;
with the shared BN every operation of a block reads the same gamma, so only widths and
depths move the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from anas.nn.supernet import Supernet, op_choices
from anas.space.arch import ArchBatch
from anas.space.search_space import SearchSpace

REDUCTIONS = ("sum", "mean")
SHARED_BN_WARNING = ("the supernet shares each block's BN between its operations (no --private-bn): the BN "
                     "indicator cannot tell kernel sizes or expand ratios apart (only widths and depths move it)")


@dataclass(frozen=True)
class IndicatorTable:
    """``values[stage, block, op, width]``: the mean |gamma| of the first ``width`` output
    channels of the projection BN of block ``block`` of ``stage``, for the operation
    ``op`` (the index in :func:`~anas.nn.supernet.op_choices`; always 0 with shared BN)
    and the ``width``-th width choice of the stage. Unused entries are zero."""

    values: np.ndarray  # (num_stages, max_depth, max_ops, max_widths), float64
    private_bn: bool


def indicator_table(supernet: Supernet) -> IndicatorTable:
    """Read the projection BNs' scales of ``supernet`` into an :class:`IndicatorTable`."""
    space = supernet.space
    values = np.zeros(table_shape(space))
    with torch.no_grad():
        for i, (stage, blocks) in enumerate(zip(space.stages, supernet.stages)):
            widths = torch.tensor(stage.widths)
            for j, block in enumerate(blocks):
                gamma = block.project.bn.weight.detach().float().abs().cpu()
                gamma = gamma if gamma.ndim == 2 else gamma[None]  # one row per operation
                running_mean = gamma.cumsum(1)[:, widths - 1] / widths  # (ops, widths)
                values[i, j, :gamma.shape[0], :len(widths)] = running_mean.double().numpy()
    return IndicatorTable(values, private_bn=supernet.private_bn)


def table_shape(space: SearchSpace) -> tuple[int, int, int, int]:
    """(stages, most blocks of a stage, most operations of a block, most widths of a stage)."""
    return (space.num_stages, max(max(s.depths) for s in space.stages),
            max(len(op_choices(s.kernel_sizes, s.expand_ratios)) for s in space.stages),
            max(len(s.widths) for s in space.stages))


def indicator_scores(space: SearchSpace, table: IndicatorTable, batch: ArchBatch, reduce: str = "sum") -> np.ndarray:
    """The indicator of every subnet of ``batch``: the sum (``reduce="sum"``) or mean
    (``"mean"``) over its active blocks of their mean |gamma|. One gather over the table."""
    columns = space.columns
    index = batch.choice_index(space)
    width = index[:, columns.width][:, 1:-1]  # the stages' widths (not the first conv's, not the head's)
    if table.private_bn:
        n_expand = np.array([len(s.expand_ratios) for s in space.stages])
        op = index[:, columns.kernel_size] * n_expand + index[:, columns.expand_ratio]
    else:
        op = np.zeros_like(width)
    stages, blocks = np.arange(space.num_stages), np.arange(table.values.shape[1])
    per_block = table.values[stages[None, :, None], blocks[None, None, :], op[:, :, None], width[:, :, None]]
    active = blocks[None, None, :] < batch.depth[:, :, None]
    total = (per_block * active).sum(axis=(1, 2))
    return total / active.sum(axis=(1, 2)) if reduce == "mean" else total

