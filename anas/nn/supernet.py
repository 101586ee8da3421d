"""The weight-sharing supernet of a search space.

Every subnet is a slice of the largest network: the first N channels of each layer, the
first D blocks of a stage, the centre k x k of the largest depthwise kernel, the input
resized to the subnet's resolution. ``set_active(arch)`` selects a subnet;
``get_active_subnet()`` returns its :class:`~anas.static.StaticNet` with the shared weights
copied in. Parameter names match the static network's, block for block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from anas.space.arch import Arch, largest_arch, smallest_arch
from anas.space.space import SearchSpace, hidden_width, se_width
from anas.nn.static import StaticNet, initialize, make_activation


def _centre_offset(shape: tuple[int, ...], sizes: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """How far (in elements) the cropped part starts into the tensor: the centre of each
    cropped spatial dimension (the third on); channels are always the leading ones."""
    return sum((shape[dim] - sizes[dim]) // 2 * strides[dim] for dim in range(2, len(sizes)))


def crop(tensor: torch.Tensor, *sizes: int) -> torch.Tensor:
    """The part of a supernet tensor that a subnet uses, as one strided view: the leading
    ``sizes[0]`` (and ``sizes[1]``) channels, the centre of any spatial dimensions.

    Trailing dimensions not named keep their size; the whole tensor is returned as it is.
    One ``as_strided`` view is one autograd node, whatever the number of sliced dimensions
    (chained slicing makes one per dimension, each with its own zero-filled intermediate
    gradient)."""
    shape = tuple(tensor.shape)
    if len(sizes) < len(shape):
        sizes = sizes + shape[len(sizes):]
    if shape == sizes:
        return tensor
    strides = tensor.stride()
    return tensor.as_strided(sizes, strides, tensor.storage_offset() + _centre_offset(shape, sizes, strides))


def _dense_strides(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...]:
    """Strides of a gap-free tensor of ``shape`` whose dimensions are laid out in the same
    order as ``strides`` (what ``torch.empty_like`` gives a contiguous or channels-last one)."""
    order = sorted(range(len(shape)), key=lambda dim: (strides[dim], -dim))  # innermost first
    dense, step = [0] * len(shape), 1
    for dim in order:
        dense[dim] = step
        step *= shape[dim]
    return tuple(dense)


@dataclass(frozen=True)
class Part:
    """A shared tensor, ``owner.<name>``, of which the active subnet uses ``size``."""

    owner: nn.Module
    name: str
    size: tuple[int, ...]


ViewArgs = tuple[tuple[int, ...], tuple[int, ...], int]
"""The (size, stride, storage offset) arguments of ``Tensor.as_strided``."""


@dataclass(frozen=True)
class CropLayout:
    """Everything cropping a list of shared tensors needs, worked out in Python once for
    their present strides: the views of the parts (forward), and where each full-size
    gradient and its part lie in one flat zero-filled buffer (backward)."""

    layouts: list[tuple[tuple[int, ...], int, torch.dtype]]  # (stride, storage offset, dtype) it was worked out for
    views: list[ViewArgs]
    grad_views: list[ViewArgs]
    grad_part_views: list[ViewArgs]
    grad_numel: int
    one_dtype: bool  # whether all gradients can share one buffer

    @classmethod
    def of(cls, tensors: list[torch.Tensor], sizes: list[tuple[int, ...]]) -> CropLayout:
        layouts, views, grad_views, grad_part_views, flat = [], [], [], [], 0
        for tensor, size in zip(tensors, sizes):
            shape, strides, offset = tuple(tensor.shape), tensor.stride(), tensor.storage_offset()
            dense = _dense_strides(shape, strides)
            layouts.append((strides, offset, tensor.dtype))
            views.append((size, strides, offset + _centre_offset(shape, size, strides)))
            grad_views.append((shape, dense, flat))
            grad_part_views.append((size, dense, flat + _centre_offset(shape, size, dense)))
            flat += tensor.numel()
        return cls(layouts, views, grad_views, grad_part_views, flat, len({t.dtype for t in tensors}) == 1)

    def fits(self, tensors: list[torch.Tensor]) -> bool:
        return all((t.stride(), t.storage_offset(), t.dtype) == layout for t, layout in zip(tensors, self.layouts))


class _CropAll(torch.autograd.Function):
    """Crops many shared tensors as one autograd node. Its backward allocates the full-size
    gradients as views of one flat zero-filled buffer and copies every part's gradient
    into them in one batched call, instead of one backward node (and its bookkeeping) per
    cropped tensor."""

    @staticmethod
    def forward(ctx, layout: CropLayout, *tensors: torch.Tensor):
        ctx.layout, ctx.tensors = layout, tensors
        return tuple(t.as_strided(*view) for t, view in zip(tensors, layout.views))

    @staticmethod
    @once_differentiable  # a second derivative through the crops is refused, not silently zero
    def backward(ctx, *grads: torch.Tensor):
        layout, tensors = ctx.layout, ctx.tensors
        if layout.one_dtype:
            flat = tensors[0].new_zeros(layout.grad_numel)
            full_grads = [flat.as_strided(*view) for view in layout.grad_views]
            part_views = [flat.as_strided(*view) for view in layout.grad_part_views]
        else:  # tensors of several dtypes: a zero-filled gradient each
            full_grads = [torch.zeros_like(t) for t in tensors]
            part_views = [crop(full, *view[0]) for full, view in zip(full_grads, layout.grad_part_views)]
        torch._foreach_copy_(part_views, grads)  # undefined gradients arrive as zeros (materialized)
        if all(ctx.needs_input_grad[1:]):
            return (None, *full_grads)
        return (None, *(full if needed else None for full, needed in zip(full_grads, ctx.needs_input_grad[1:])))


class CropPlan:
    """How to take the active subnet's parts of the shared tensors, worked out once per
    :meth:`Supernet.set_active`. It holds the owning modules and attribute names, not the
    tensors, so a forward pass always reads the supernet's current parameters (after
    ``load_state_dict(assign=True)``, ``.to()`` or a change of memory format too); the
    view arguments are worked out again when those tensors' strides change."""

    def __init__(self, parts: list[Part]):
        # the owners' parameter dictionaries: looking a parameter up there is several times
        # faster than nn.Module.__getattr__, and sees the same (current) tensor
        self.sources = [(part.owner._parameters, part.name) for part in parts]
        self.cropped = [i for i, part in enumerate(parts) if tuple(getattr(part.owner, part.name).shape) != part.size]
        self.sizes = [parts[i].size for i in self.cropped]
        self._layout: CropLayout | None = None

    def layout(self, tensors: list[torch.Tensor]) -> CropLayout:
        if self._layout is None or not self._layout.fits(tensors):
            self._layout = CropLayout.of(tensors, self.sizes)
        return self._layout

    def take(self) -> list[torch.Tensor]:
        """The parts, in order; with autograd on, all cropped ones come from a single
        ``_CropAll`` node (tensors used whole pass as they are)."""
        taken = [parameters[name] for parameters, name in self.sources]
        if not self.cropped:
            return taken
        tensors = [taken[i] for i in self.cropped]
        layout = self.layout(tensors)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            results = _CropAll.apply(layout, *tensors)
        else:
            results = [t.as_strided(*view) for t, view in zip(tensors, layout.views)]
        for i, result in zip(self.cropped, results):
            taken[i] = result
        return taken


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels, C given by the cropped affine ``weight``."""

    update_stats: bool = True
    _sliced: tuple | None = None  # (c, running mean, running variance, their first c entries)

    def running_stats(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``c`` entries of the running mean and variance, as views of the buffers;
        kept from one forward pass to the next while ``c`` and the buffers stay the same."""
        mean, var = self._buffers["running_mean"], self._buffers["running_var"]
        sliced = self._sliced
        if (sliced is None or sliced[0] != c or sliced[1] is not mean or sliced[2] is not var
                or sliced[3].data_ptr() != mean.data_ptr() or sliced[4].data_ptr() != var.data_ptr()):
            sliced = self._sliced = (c, mean, var, mean[:c], var[:c])
        return sliced[3], sliced[4]

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.training and not self.update_stats:
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        mean, var = self.running_stats(weight.shape[0])
        return F.batch_norm(x, mean, var, weight, bias, self.training, self.momentum, self.eps)


class DynamicConvBNAct(nn.Module):
    """Conv (max channels, max kernel) + BN + optional activation; ``active_in``,
    ``active_out`` and ``active_kernel`` select the part (a depthwise conv has as many
    outputs as inputs)."""

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1,
                 depthwise: bool = False, activation: str | None = "swish"):
        super().__init__()
        self.stride = stride
        self.depthwise = depthwise
        self.conv = nn.Conv2d(max_in, max_out, max_kernel, stride, max_kernel // 2,
                              groups=max_out if depthwise else 1, bias=False)
        self.bn = DynamicBatchNorm2d(max_out)
        self.act = make_activation(activation) if activation else nn.Identity()
        self.active_in = max_in
        self.active_out = max_out
        self.active_kernel = max_kernel

    def parts(self) -> list[Part]:
        k, c_out = self.active_kernel, self.active_out
        weight = (c_out, 1, k, k) if self.depthwise else (c_out, self.active_in, k, k)
        return [Part(self.conv, "weight", weight), Part(self.bn, "weight", (c_out,)), Part(self.bn, "bias", (c_out,))]

    def forward(self, x: torch.Tensor, parts: Iterator[torch.Tensor]) -> torch.Tensor:
        k = self.active_kernel
        y = F.conv2d(x, next(parts), None, self.stride, k // 2, 1, self.active_out if self.depthwise else 1)
        return self.act(self.bn(y, next(parts), next(parts)))


class DynamicSqueezeExcite(nn.Module):
    def __init__(self, max_channels: int, max_squeezed: int):
        super().__init__()
        self.reduce = nn.Conv2d(max_channels, max_squeezed, 1, bias=True)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(max_squeezed, max_channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()
        self.active_channels = max_channels
        self.active_squeezed = max_squeezed

    def parts(self) -> list[Part]:
        c, s = self.active_channels, self.active_squeezed
        return [Part(self.reduce, "weight", (s, c, 1, 1)), Part(self.reduce, "bias", (s,)),
                Part(self.expand, "weight", (c, s, 1, 1)), Part(self.expand, "bias", (c,))]

    def forward(self, x: torch.Tensor, parts: Iterator[torch.Tensor]) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.relu(F.conv2d(scale, next(parts), next(parts)))
        scale = F.conv2d(scale, next(parts), next(parts))
        return x * self.gate(scale)


class DynamicShortcut(nn.Module):
    def __init__(self, max_in: int, max_out: int, stride: int, has_conv: bool):
        super().__init__()
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False) if has_conv else nn.Identity()
        self.active_in = max_in
        self.active_out = max_out

    @property
    def _converts(self) -> bool:
        """Whether the active widths need the 1x1 conv (else only the pooling runs)."""
        return self.active_in != self.active_out

    def parts(self) -> list[Part]:
        return [Part(self.conv, "weight", (self.active_out, self.active_in, 1, 1))] if self._converts else []

    def forward(self, x: torch.Tensor, parts: Iterator[torch.Tensor]) -> torch.Tensor:
        x = self.pool(x)
        return F.conv2d(x, next(parts)) if self._converts else x


@dataclass(frozen=True)
class _BlockChoice:
    c_in: int
    c_out: int
    kernel_size: int
    expand_ratio: float

    @property
    def hidden(self) -> int:
        return int(hidden_width(self.c_in, self.expand_ratio))


class DynamicInvertedResidual(nn.Module):
    """An inverted-residual block at its largest; ``choose`` sets the active part."""

    def __init__(self, in_choices: tuple[int, ...], out_choices: tuple[int, ...], kernel_sizes: tuple[int, ...],
                 expand_ratios: tuple[float, ...], stride: int, use_se: bool, activation: str,
                 first_of_stage: bool = True):
        super().__init__()
        max_in, max_out, max_k = max(in_choices), max(out_choices), max(kernel_sizes)
        max_hidden = max(int(hidden_width(c, e)) for c in in_choices for e in expand_ratios)
        self.stride = stride
        self.expand = (DynamicConvBNAct(max_in, max_hidden, 1, activation=activation)
                       if any(e != 1 for e in expand_ratios) else None)
        self.depthwise = DynamicConvBNAct(max_hidden, max_hidden, max_k, stride, depthwise=True, activation=activation)
        self.se = DynamicSqueezeExcite(max_hidden, int(se_width(max_hidden))) if use_se else None
        self.project = DynamicConvBNAct(max_hidden, max_out, 1, activation=None)
        # only a stage's first block can change the width (later blocks map c -> c)
        needs_conv = first_of_stage and any(a != b for a in in_choices for b in out_choices)
        self.shortcut = DynamicShortcut(max_in, max_out, stride, needs_conv) if stride > 1 or needs_conv else None
        self.choice: _BlockChoice | None = None
        self.drop_connect = 0.0

    def choose(self, choice: _BlockChoice) -> None:
        self.choice = choice
        hidden = choice.hidden
        if self.expand is not None:
            self.expand.active_in, self.expand.active_out = choice.c_in, hidden
        self.depthwise.active_in = self.depthwise.active_out = hidden
        self.depthwise.active_kernel = choice.kernel_size
        if self.se is not None:
            self.se.active_channels, self.se.active_squeezed = hidden, int(se_width(hidden))
        self.project.active_in, self.project.active_out = hidden, choice.c_out
        if self.shortcut is not None:
            self.shortcut.active_in, self.shortcut.active_out = choice.c_in, choice.c_out

    @property
    def _expands(self) -> bool:
        return self.choice.expand_ratio != 1

    @property
    def _identity(self) -> bool:
        return self.stride == 1 and self.choice.c_in == self.choice.c_out

    def parts(self) -> list[Part]:
        parts = self.expand.parts() if self._expands else []
        parts += self.depthwise.parts()
        if self.se is not None:
            parts += self.se.parts()
        parts += self.project.parts()
        if not self._identity:
            parts += self.shortcut.parts()
        return parts

    def forward(self, x: torch.Tensor, parts: Iterator[torch.Tensor]) -> torch.Tensor:
        out = self.expand(x, parts) if self._expands else x
        out = self.depthwise(out, parts)
        if self.se is not None:
            out = self.se(out, parts)
        out = self.project(out, parts)
        if self.training and self.drop_connect > 0:
            keep = 1.0 - self.drop_connect
            mask = torch.rand(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype) < keep
            out = out * mask / keep
        return out + (x if self._identity else self.shortcut(x, parts))


class DynamicHead(nn.Module):
    def __init__(self, max_in: int, expand_ratio: int, max_width: int, num_classes: int, activation: str):
        super().__init__()
        self.expand_ratio = expand_ratio
        self.expand = DynamicConvBNAct(max_in, expand_ratio * max_in, 1, activation=activation)
        self.mix = nn.Conv2d(expand_ratio * max_in, max_width, 1, bias=False)
        self.act = make_activation(activation)
        self.classifier = nn.Linear(max_width, num_classes)
        self.active_width = max_width
        self.dropout = 0.0

    def choose(self, c_in: int, width: int) -> None:
        self.expand.active_in, self.expand.active_out = c_in, self.expand_ratio * c_in
        self.active_width = width

    def parts(self) -> list[Part]:
        width, classes = self.active_width, self.classifier.out_features
        return [*self.expand.parts(), Part(self.mix, "weight", (width, self.expand.active_out, 1, 1)),
                Part(self.classifier, "weight", (classes, width)), Part(self.classifier, "bias", (classes,))]

    def forward(self, x: torch.Tensor, parts: Iterator[torch.Tensor]) -> torch.Tensor:
        x = self.expand(x, parts).mean((2, 3), keepdim=True)
        x = self.act(F.conv2d(x, next(parts))).flatten(1)
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return F.linear(x, next(parts), next(parts))


class Supernet(nn.Module):
    """All subnets of ``space`` in one network with shared weights."""

    def __init__(self, space: SearchSpace, num_classes: int | None = None):
        super().__init__()
        self.space = space
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
                                              stage.stride if j == 0 else 1, stage.se, act, first_of_stage=j == 0)
                      for j in range(max(stage.depths))]
            stages.append(nn.ModuleList(blocks))
            in_choices = stage.widths
        self.stages = nn.ModuleList(stages)
        self.head = DynamicHead(max(in_choices), space.head.expand_ratio, max(space.head.widths),
                                self.num_classes, act)
        self._reset_parameters()
        self.active_arch: Arch = largest_arch(space)
        self.set_active(self.active_arch)

    def _reset_parameters(self) -> None:
        initialize(self, [block for stage in self.stages for block in stage])

    # -- selecting subnets --------------------------------------------------------------

    def set_active(self, arch: Arch, dropout: float = 0.0, drop_connect: float = 0.0,
                   drop_connect_stages: int = 2) -> None:
        """Select ``arch``. ``dropout`` (before the classifier) and ``drop_connect`` apply in
        training mode; drop-connect grows linearly with the block index up to
        ``drop_connect`` in the last ``drop_connect_stages`` stages. It is the one way to change
        the active subnet: it also works out the crops that ``forward`` takes."""
        self.active_arch = arch
        self.first_conv.active_out = arch.width[0]
        c_in = arch.width[0]
        total_blocks = sum(arch.depth)
        index = 0
        first_regularized = self.space.num_stages - drop_connect_stages
        for i, stage in enumerate(self.stages):
            c_out = arch.width[i + 1]
            for j in range(arch.depth[i]):
                block = stage[j]
                block.choose(_BlockChoice(c_in if j == 0 else c_out, c_out, arch.kernel_size[i], arch.expand_ratio[i]))
                block.drop_connect = drop_connect * index / total_blocks if i >= first_regularized else 0.0
                index += 1
            c_in = c_out
        self.head.choose(c_in, arch.width[-1])
        self.head.dropout = dropout
        self._running = self._running_modules()
        self._plan = CropPlan([part for module in self._running for part in module.parts()])

    def set_largest(self, **regularization) -> None:
        self.set_active(largest_arch(self.space), **regularization)

    def set_smallest(self) -> None:
        self.set_active(smallest_arch(self.space))

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
        arch = self.active_arch
        if x.shape[-1] != arch.resolution or x.shape[-2] != arch.resolution:
            x = F.interpolate(x, size=(arch.resolution, arch.resolution), mode="bilinear", align_corners=False)
        parts = iter(self._plan.take())
        for module in self._running:
            x = module(x, parts)
        return x

    # -- extraction ---------------------------------------------------------------------

    def _running_modules(self) -> list[nn.Module]:
        """First conv, the active blocks, head: what ``forward`` runs, in order."""
        depth = self.active_arch.depth
        return [self.first_conv, *(stage[j] for i, stage in enumerate(self.stages) for j in range(depth[i])),
                self.head]

    def active_modules(self) -> list[tuple[str, nn.Module]]:
        """The supernet modules the active subnet runs, under the names of the matching
        modules of its :class:`~anas.static.StaticNet` (``first_conv``, ``blocks.N``, ``head``)."""
        first, *blocks, head = self._running_modules()
        return [("first_conv", first), *((f"blocks.{k}", b) for k, b in enumerate(blocks)), ("head", head)]

    def get_active_subnet(self) -> StaticNet:
        """The static network of the active subnet, with the shared weights (and BN
        statistics) copied in; independent of the supernet afterwards."""
        net = StaticNet(self.space, self.active_arch, self.num_classes)
        with torch.no_grad():
            for name, source in self.active_modules():
                source_state = source.state_dict()
                for key, tensor in net.get_submodule(name).state_dict().items():
                    tensor.copy_(crop(source_state[key], *tensor.shape))
        return net.train(self.training)
