"""The static (plain) network of one subnet: a standalone ``torch.nn.Module``.

It needs no supernet: ``StaticNet(space, arch)`` gives a freshly initialized network
whose layers have exactly the shapes of the subnet. The supernet's ``get_active_subnet()``
returns the same class with the shared weights copied in, and ``anas export`` ships it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anas.space.arch import Arch
from anas.space.search_space import SearchSpace, hidden_width, se_width

ACTIVATION_MODULES: dict[str, type[nn.Module]] = {"swish": nn.SiLU, "relu": nn.ReLU, "hswish": nn.Hardswish}
"""The module of each activation a space may name (``anas.space.search_space.ACTIVATIONS``)."""


def make_activation(name: str) -> nn.Module:
    return ACTIVATION_MODULES[name]()


def initialize(network: nn.Module, blocks) -> None:
    """The initialization of every anas network: Kaiming (fan-out) convolutions, unit BN,
    small linear weights, zero biases; the last BN of each block starts at zero, so every
    block starts as its shortcut."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)
    for block in blocks:
        nn.init.zeros_(block.project.bn.weight)


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """``images`` at ``resolution`` x ``resolution`` (bilinear), as every subnet sees its
    input: the data comes at the space's largest resolution."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


def drop_connect_rates(depth: tuple[int, ...], rate: float, last_stages: int) -> list[float]:
    """Drop-connect rate of each block of a subnet with ``depth`` blocks per stage: growing
    linearly with the block's index, ``rate * index / blocks``, in the ``last_stages``
    last stages, and 0 before them."""
    total, first_regularized = sum(depth), len(depth) - last_stages
    stage_of_block = [i for i, d in enumerate(depth) for _ in range(d)]
    return [rate * index / total if stage >= first_regularized else 0.0 for index, stage in enumerate(stage_of_block)]


def drop_connect(residual: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Zero a block's residual branch for a random ``rate`` share of the samples (in
    training), scaling the kept ones by ``1 / (1 - rate)``."""
    if not training or rate <= 0:
        return residual
    keep = 1.0 - rate
    mask = torch.rand(residual.shape[0], 1, 1, 1, device=residual.device, dtype=residual.dtype) < keep
    return residual * mask / keep


class ConvBNAct(nn.Module):
    """Convolution without bias, BatchNorm, optional activation; 'same' padding."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, activation: str | None = "swish"):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = make_activation(activation) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class PooledConv(nn.Conv2d):
    """A 1x1 convolution of globally pooled features, ``[N, C] -> [N, out]``: a matrix
    product with the weight viewed as ``[out, in]``. (The supernet's sliced weights are
    read in place this way, where a convolution would first copy them.)"""

    def __init__(self, c_in: int, c_out: int, bias: bool):
        super().__init__(c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.view(self.out_channels, -1), self.bias)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool, 1x1 conv, ReLU, 1x1 conv, hard-sigmoid gate."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = PooledConv(channels, squeezed, bias=True)
        self.relu = nn.ReLU()
        self.expand = PooledConv(squeezed, channels, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.expand(self.relu(self.reduce(x.mean((2, 3)))))
        return x * self.gate(scale)[:, :, None, None]


class Shortcut(nn.Module):
    """Residual path of a block whose input and output shapes differ: average pooling for
    stride > 1, then a 1x1 conv without BN when the channels differ."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class InvertedResidual(nn.Module):
    """MobileNetV3 block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project, plus residual."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, expand_ratio: float,
                 stride: int, use_se: bool, activation: str):
        super().__init__()
        hidden = int(hidden_width(c_in, expand_ratio))
        self.expand = ConvBNAct(c_in, hidden, 1, activation=activation) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, activation=activation)
        self.se = SqueezeExcite(hidden, int(se_width(hidden))) if use_se else None
        self.project = ConvBNAct(hidden, c_out, 1, activation=None)
        identity = stride == 1 and c_in == c_out
        self.shortcut = None if identity else Shortcut(c_in, c_out, stride)
        self.drop_connect = 0.0  # set by StaticNet.regularize for training

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The block's branch beside its shortcut: expand, depthwise, SE, project."""
        out = x if self.expand is None else self.expand(x)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        return self.project(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = drop_connect(self.residual(x), self.drop_connect, self.training)
        return out + (x if self.shortcut is None else self.shortcut(x))


class ClassifierHead(nn.Module):
    """1x1 expand (BN, act), global pool, 1x1 mix conv (no BN, act), dropout, linear."""

    def __init__(self, c_in: int, expanded: int, width: int, num_classes: int,
                 dropout: float, activation: str):
        super().__init__()
        self.expand = ConvBNAct(c_in, expanded, 1, activation=activation)
        self.mix = PooledConv(expanded, width, bias=False)
        self.act = make_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``width`` features the classifier reads (before dropout)."""
        return self.act(self.mix(self.expand(x).mean((2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


class StaticNet(nn.Module):
    """The plain network of one subnet; ``forward`` takes images at ``arch.resolution``."""

    def __init__(self, space: SearchSpace, arch: Arch, num_classes: int | None = None):
        super().__init__()
        self.space_name = space.name
        self.arch = arch
        self.num_classes = space.num_classes if num_classes is None else num_classes
        act = space.activation
        first = space.first_conv
        self.first_conv = ConvBNAct(space.in_channels, arch.width[0], first.kernel_size, first.stride, activation=act)
        blocks = []
        channels = arch.width[0]
        for i, stage in enumerate(space.stages):
            for j in range(arch.depth[i]):
                blocks.append(InvertedResidual(
                    channels, arch.width[i + 1], arch.kernel_size[i], arch.expand_ratio[i],
                    stage.stride if j == 0 else 1, stage.se, stage.activation,
                ))
                channels = arch.width[i + 1]
        self.blocks = nn.Sequential(*blocks)
        self.head = ClassifierHead(channels, space.head.expand_ratio * channels, arch.width[-1],
                                   self.num_classes, space.dropout, act)
        self.reset_parameters()

    @property
    def resolution(self) -> int:
        return self.arch.resolution

    def reset_parameters(self) -> None:
        initialize(self, self.blocks)

    def regularize(self, dropout: float, drop_connect_rate: float, drop_connect_stages: int) -> None:
        """The training regularization of the supernet's largest subnet: ``dropout`` before
        the classifier and drop-connect (:func:`drop_connect_rates`); both act only in
        training mode."""
        self.head.dropout.p = dropout
        for block, rate in zip(self.blocks, drop_connect_rates(self.arch.depth, drop_connect_rate,
                                                                drop_connect_stages)):
            block.drop_connect = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.first_conv(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the classifier reads."""
        return self.head.features(self.blocks(self.first_conv(x)))

