"""The weight-sharing supernet of a search space.

Every subnet is a slice of the largest network: the first N channels of each layer, the
first D blocks of a stage, the centre k x k of the largest depthwise kernel, the input
resized to the subnet's resolution. ``set_active(arch)`` selects a subnet;
``get_active_subnet()`` returns its :class:`~anas.nn.static.StaticNet` with the shared
weights copied in. Parameter names match the static network's, block for block.

The elastic layers follow the once-for-all habit: each holds its largest weights, keeps
its active setting in plain attributes (``active_in``, ``active_out``, ``active_kernel``)
and, in its own ``forward``, crops what that setting uses (:func:`crop`) and calls the
functional op. So any layer runs on its own as ``layer(x)``, and the cropping is read
where it happens.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from anas.nn.static import (
    PooledConv,
    StaticNet,
    drop_connect,
    drop_connect_rates,
    initialize,
    make_activation,
    resize,
)
from anas.space.arch import Arch, largest_arch
from anas.space.search_space import SearchSpace, hidden_width, se_width


def crop(tensor: torch.Tensor, *sizes: int) -> torch.Tensor:
    """The part of a shared tensor that a subnet uses: the leading ``sizes[0]`` (and
    ``sizes[1]``) channels and the centre of the further (spatial) dimensions; dimensions
    not named keep their size. The tensor itself when nothing is cut off.

    Plain slicing (a view). A single ``Tensor.as_strided`` view per tensor, one autograd
    node instead of one per cut dimension, measured no faster beyond this project's CPU
    noise: with slicing the supernet/static ratios of ``cifar`` and ``attentive-nas``
    changed by 0.996 to 1.032, while the largest subnet, whose code is the same either way,
    moved by 0.966 to 1.053 (``benchmarks/train_step.py --against``; docs/train.md,
    "Supernet against static network")."""
    shape = tensor.shape
    sizes = (*sizes, *shape[len(sizes):])
    if sizes == shape:
        return tensor
    channels = [slice(0, size) for size in sizes[:2]]
    spatial = [slice((full - size) // 2, (full - size) // 2 + size) for full, size in zip(shape[2:], sizes[2:])]
    return tensor[(*channels, *spatial)]


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels, C being the input's."""

    update_stats: bool = True  # False inside Supernet.frozen_bn_stats()

    def active_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The scale and shift (gamma, beta) of every channel, as the active subnet uses them."""
        return self.weight, self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        gamma, beta = self.active_affine()
        weight, bias = crop(gamma, c), crop(beta, c)
        if self.training and not self.update_stats:
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], weight, bias, self.training,
                            self.momentum, self.eps)


class PrivateBatchNorm2d(DynamicBatchNorm2d):
    """A :class:`DynamicBatchNorm2d` whose scale and shift are private to each of
    ``num_choices`` choices: ``weight`` and ``bias`` hold one row per choice, and
    ``active_choice`` picks the row the active subnet uses (BN-NAS gives every candidate
    operation its own BN). The running statistics stay shared (they are recalibrated per
    subnet before any evaluation)."""

    def __init__(self, num_features: int, num_choices: int):
        super().__init__(num_features)
        self.weight = nn.Parameter(torch.ones(num_choices, num_features))
        self.bias = nn.Parameter(torch.zeros(num_choices, num_features))
        self.active_choice = 0

    def active_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight[self.active_choice], self.bias[self.active_choice]


class DynamicConvBNAct(nn.Module):
    """Conv (largest channels and kernel) + BN + optional activation. The active part is
    the first ``active_out`` filters over the first ``active_in`` input channels, with the
    centre ``active_kernel`` x ``active_kernel`` of the kernel (a depthwise conv has as
    many filters as input channels)."""

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1,
                 depthwise: bool = False, activation: str | None = "swish", bn_choices: int = 0):
        super().__init__()
        self.stride = stride
        self.depthwise = depthwise
        self.conv = nn.Conv2d(max_in, max_out, max_kernel, stride, max_kernel // 2,
                              groups=max_out if depthwise else 1, bias=False)
        self.bn = PrivateBatchNorm2d(max_out, bn_choices) if bn_choices else DynamicBatchNorm2d(max_out)
        self.act = make_activation(activation) if activation else None
        self.active_in = max_in
        self.active_out = max_out
        self.active_kernel = max_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, out = self.active_kernel, self.active_out
        if self.depthwise:  # one filter per channel: the kernel's centre k x k
            x = F.conv2d(x, crop(self.conv.weight, out, 1, k, k), None, self.stride, k // 2, 1, out)
        else:  # the kernel of a full convolution (1x1, or the first conv's) is not elastic
            x = F.conv2d(x, crop(self.conv.weight, out, self.active_in), None, self.stride, k // 2)
        x = self.bn(x)
        return x if self.act is None else self.act(x)


class DynamicSqueezeExcite(nn.Module):
    """Squeeze-and-excitation over the first ``active_channels`` channels, squeezed to
    ``active_squeezed``."""

    def __init__(self, max_channels: int, max_squeezed: int):
        super().__init__()
        self.reduce = PooledConv(max_channels, max_squeezed, bias=True)
        self.relu = nn.ReLU()
        self.expand = PooledConv(max_squeezed, max_channels, bias=True)
        self.gate = nn.Hardsigmoid()
        self.active_channels = max_channels
        self.active_squeezed = max_squeezed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.active_channels, self.active_squeezed
        scale = x.mean((2, 3))
        scale = self.relu(F.linear(scale, crop(self.reduce.weight, s, c).view(s, c), crop(self.reduce.bias, s)))
        scale = F.linear(scale, crop(self.expand.weight, c, s).view(c, s), crop(self.expand.bias, c))
        return x * self.gate(scale)[:, :, None, None]


class DynamicShortcut(nn.Module):
    """Residual path of a block whose shapes change: average pooling for stride > 1, then
    the first ``active_out`` x ``active_in`` of a 1x1 conv when the active widths differ."""

    def __init__(self, max_in: int, max_out: int, stride: int, has_conv: bool):
        super().__init__()
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False) if has_conv else nn.Identity()
        self.active_in = max_in
        self.active_out = max_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        if self.active_in == self.active_out:
            return x
        return F.conv2d(x, crop(self.conv.weight, self.active_out, self.active_in))


def op_choices(kernel_sizes: tuple[int, ...], expand_ratios: tuple[float, ...]) -> list[tuple[int, float]]:
    """The operations a block can run, as (kernel size, expand ratio) pairs: the kernel
    sizes in the space's order, each with the expand ratios in order. Row ``i`` of a
    private BN belongs to the ``i``-th pair."""
    return [(k, e) for k in kernel_sizes for e in expand_ratios]


@dataclass(frozen=True)
class BlockChoice:
    """The active setting of one inverted-residual block."""

    c_in: int
    c_out: int
    kernel_size: int
    expand_ratio: float

    @property
    def hidden(self) -> int:
        return int(hidden_width(self.c_in, self.expand_ratio))


class DynamicInvertedResidual(nn.Module):
    """An inverted-residual block at its largest; ``choose`` sets the active part. With
    ``private_bn`` the projection BN keeps a scale and shift per (kernel size, expand
    ratio) choice, in the order of :func:`op_choices`."""

    def __init__(self, in_choices: tuple[int, ...], out_choices: tuple[int, ...], kernel_sizes: tuple[int, ...],
                 expand_ratios: tuple[float, ...], stride: int, use_se: bool, activation: str,
                 first_of_stage: bool = True, private_bn: bool = False):
        super().__init__()
        self.op_choices = op_choices(kernel_sizes, expand_ratios) if private_bn else None
        max_in, max_out, max_k = max(in_choices), max(out_choices), max(kernel_sizes)
        max_hidden = max(int(hidden_width(c, e)) for c in in_choices for e in expand_ratios)
        self.stride = stride
        self.expand = (DynamicConvBNAct(max_in, max_hidden, 1, activation=activation)
                       if any(e != 1 for e in expand_ratios) else None)
        self.depthwise = DynamicConvBNAct(max_hidden, max_hidden, max_k, stride, depthwise=True, activation=activation)
        self.se = DynamicSqueezeExcite(max_hidden, int(se_width(max_hidden))) if use_se else None
        self.project = DynamicConvBNAct(max_hidden, max_out, 1, activation=None,
                                        bn_choices=len(self.op_choices) if private_bn else 0)
        # only a stage's first block can change the width (later blocks map c -> c)
        needs_conv = first_of_stage and any(a != b for a in in_choices for b in out_choices)
        self.shortcut = DynamicShortcut(max_in, max_out, stride, needs_conv) if stride > 1 or needs_conv else None
        self.choose(BlockChoice(max_in, max_out, max_k, max(expand_ratios)))
        self.drop_connect = 0.0

    def choose(self, choice: BlockChoice) -> None:
        self.choice = choice
        hidden = choice.hidden
        self.expands = choice.expand_ratio != 1
        self.identity = self.stride == 1 and choice.c_in == choice.c_out
        if self.expand is not None:
            self.expand.active_in, self.expand.active_out = choice.c_in, hidden
        self.depthwise.active_in = self.depthwise.active_out = hidden
        self.depthwise.active_kernel = choice.kernel_size
        if self.se is not None:
            self.se.active_channels, self.se.active_squeezed = hidden, int(se_width(hidden))
        self.project.active_in, self.project.active_out = hidden, choice.c_out
        if self.op_choices is not None:
            self.project.bn.active_choice = self.op_choices.index((choice.kernel_size, choice.expand_ratio))
        if self.shortcut is not None:
            self.shortcut.active_in, self.shortcut.active_out = choice.c_in, choice.c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.expand(x) if self.expands else x
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = drop_connect(self.project(out), self.drop_connect, self.training)
        return out + (x if self.identity else self.shortcut(x))


class DynamicHead(nn.Module):
    """1x1 expansion (BN, act), global pool, 1x1 mix conv to ``active_width``, dropout,
    linear classifier over the first ``active_width`` features."""

    def __init__(self, max_in: int, expand_ratio: int, max_width: int, num_classes: int, activation: str):
        super().__init__()
        self.expand_ratio = expand_ratio
        self.expand = DynamicConvBNAct(max_in, expand_ratio * max_in, 1, activation=activation)
        self.mix = PooledConv(expand_ratio * max_in, max_width, bias=False)
        self.act = make_activation(activation)
        self.classifier = nn.Linear(max_width, num_classes)
        self.active_width = max_width
        self.dropout = 0.0

    def choose(self, c_in: int, width: int) -> None:
        self.expand.active_in, self.expand.active_out = c_in, self.expand_ratio * c_in
        self.active_width = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``active_width`` features the classifier reads (before dropout)."""
        width = self.active_width
        x = self.expand(x).mean((2, 3))
        return self.act(F.linear(x, crop(self.mix.weight, width, self.expand.active_out).view(width, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return F.linear(x, crop(self.classifier.weight, self.classifier.out_features, self.active_width),
                        self.classifier.bias)


class Supernet(nn.Module):
    """All subnets of ``space`` in one network with shared weights; with ``private_bn``
    each block's projection BN has a scale and shift per (kernel size, expand ratio)
    choice (:class:`PrivateBatchNorm2d`, for BN-NAS)."""

    def __init__(self, space: SearchSpace, num_classes: int | None = None, private_bn: bool = False):
        super().__init__()
        self.space = space
        self.private_bn = private_bn
        self.num_classes = space.num_classes if num_classes is None else num_classes
        act = space.activation
        first = space.first_conv
        self.first_conv = DynamicConvBNAct(space.in_channels, max(first.widths), first.kernel_size,
                                           first.stride, activation=act)
        stages = []
        in_choices = first.widths
        for stage in space.stages:
            blocks = [DynamicInvertedResidual(in_choices if j == 0 else stage.widths, stage.widths,
                                              stage.kernel_sizes, stage.expand_ratios,
                                              stage.stride if j == 0 else 1, stage.se, stage.activation,
                                              first_of_stage=j == 0, private_bn=private_bn)
                      for j in range(max(stage.depths))]
            stages.append(nn.ModuleList(blocks))
            in_choices = stage.widths
        self.stages = nn.ModuleList(stages)
        self.head = DynamicHead(max(in_choices), space.head.expand_ratio, max(space.head.widths),
                                self.num_classes, act)
        initialize(self, [block for stage in self.stages for block in stage])
        self.set_active(largest_arch(space))

    # -- selecting subnets --------------------------------------------------------------

    def set_active(self, arch: Arch, dropout: float = 0.0, drop_connect: float = 0.0,
                   drop_connect_stages: int = 2) -> None:
        """Select ``arch``. ``dropout`` (before the classifier) and ``drop_connect`` apply in
        training mode; drop-connect grows linearly with the block index up to
        ``drop_connect`` in the last ``drop_connect_stages`` stages."""
        self.active_arch = arch
        self.first_conv.active_out = arch.width[0]
        c_in = arch.width[0]
        rates = iter(drop_connect_rates(arch.depth, drop_connect, drop_connect_stages))
        for i, stage in enumerate(self.stages):
            c_out = arch.width[i + 1]
            for j in range(arch.depth[i]):
                block = stage[j]
                block.choose(BlockChoice(c_in if j == 0 else c_out, c_out, arch.kernel_size[i], arch.expand_ratio[i]))
                block.drop_connect = next(rates)
            c_in = c_out
        self.head.choose(c_in, arch.width[-1])
        self.head.dropout = dropout

    def indicator_bns(self) -> list[DynamicBatchNorm2d]:
        """The BN of each block that the BN-NAS indicator reads: the projection's."""
        return [block.project.bn for stage in self.stages for block in stage]

    @contextmanager
    def frozen_bn_stats(self):
        """Forward passes in training mode that leave the BN running statistics alone."""
        bns = [m for m in self.modules() if isinstance(m, DynamicBatchNorm2d)]
        for bn in bns:
            bn.update_stats = False
        try:
            yield self
        finally:
            for bn in bns:
                bn.update_stats = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The active subnet's pooled features, those its classifier reads."""
        return self.head.features(self.body(x))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The active subnet up to its head: first conv and blocks, on ``x`` resized."""
        arch = self.active_arch
        x = self.first_conv(resize(x, arch.resolution))
        for stage, depth in zip(self.stages, arch.depth):
            for block in islice(stage, depth):
                x = block(x)
        return x

    # -- extraction ---------------------------------------------------------------------

    def active_modules(self) -> list[tuple[str, nn.Module]]:
        """The supernet modules the active subnet runs, under the names of the matching
        modules of its :class:`~anas.nn.static.StaticNet` (``first_conv``, ``blocks.N``, ``head``)."""
        blocks = [block for stage, depth in zip(self.stages, self.active_arch.depth) for block in islice(stage, depth)]
        return [("first_conv", self.first_conv), *((f"blocks.{k}", b) for k, b in enumerate(blocks)),
                ("head", self.head)]

    def get_active_subnet(self) -> StaticNet:
        """The static network of the active subnet, with the shared weights (and BN
        statistics) copied in; independent of the supernet afterwards."""
        net = StaticNet(self.space, self.active_arch, self.num_classes)
        with torch.no_grad():
            for name, source in self.active_modules():
                source_state = active_state(source)
                for key, tensor in net.get_submodule(name).state_dict().items():
                    tensor.copy_(crop(source_state[key], *tensor.shape))
        return net.train(self.training)


def active_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with each private BN's scale and shift replaced by the rows
    of its active choice: the shapes a static network's BN has."""
    state = module.state_dict()
    for name, bn in module.named_modules():
        if isinstance(bn, PrivateBatchNorm2d):
            prefix = f"{name}." if name else ""
            state[prefix + "weight"], state[prefix + "bias"] = bn.active_affine()
    return state
