"""The mixed network of AutoSpace: per stage, every layer mixes the stage's candidate
blocks by the softmax of the stage's logits, so that training it on the data learns how
much each candidate is worth (the weights :mod:`anas.autospace.evolve` turns into fitness)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anas.autospace.population import Block, candidate_mflops, largest_mflops
from anas.nn.static import ClassifierHead, ConvBNAct, InvertedResidual, Shortcut, initialize
from anas.runtime.distributed import DistContext, all_reduce_gradients
from anas.space.arch import largest_arch
from anas.space.search_space import SearchSpace


def candidate_block(block: Block, c_in: int, c_out: int, stride: int) -> InvertedResidual:
    """The static network's inverted-residual block for a candidate (the mixed layer uses
    its ``residual`` branch)."""
    return InvertedResidual(c_in, c_out, block.kernel, block.expand, stride, block.se, block.activation)


class MixedLayer(nn.Module):
    """``shortcut(x) + sum_k w_k branch_k(x)``: the candidates' blocks share the layer's
    shortcut (identity, or pooling and a 1x1 conv), so their weighted sum is ``sum_k w_k
    block_k(x)`` with one skip path; ``w`` comes from the stage."""

    def __init__(self, candidates: list[Block], c_in: int, c_out: int, stride: int):
        super().__init__()
        self.blocks = nn.ModuleList(candidate_block(b, c_in, c_out, stride) for b in candidates)
        self.shortcut = Shortcut(c_in, c_out, stride) if stride > 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + sum(w * block.residual(x) for w, block in zip(weights, self.blocks))


class MixedStage(nn.Module):
    """A stage whose every layer mixes its candidates by ``softmax(logits)``."""

    def __init__(self, candidates: list[Block], c_in: int, c_out: int, depth: int, stride: int):
        super().__init__()
        self.candidates = list(candidates)
        self.logits = nn.Parameter(torch.zeros(len(candidates)))
        self.layers = nn.ModuleList(MixedLayer(candidates, c_in if j == 0 else c_out, c_out, stride if j == 0 else 1)
                                    for j in range(depth))

    def weights(self) -> torch.Tensor:
        return F.softmax(self.logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.weights()
        for layer in self.layers:
            x = layer(x, weights)
        return x


class MixedNet(nn.Module):
    """The source space's largest subnet with a :class:`MixedStage` per stage."""

    def __init__(self, space: SearchSpace, candidates: list[list[Block]], num_classes: int):
        super().__init__()
        arch = largest_arch(space)
        first = space.first_conv
        self.first_conv = ConvBNAct(space.in_channels, arch.width[0], first.kernel_size, first.stride,
                                    activation=space.activation)
        stages, channels = [], arch.width[0]
        for i, stage in enumerate(space.stages):
            stages.append(MixedStage(candidates[i], channels, arch.width[i + 1], arch.depth[i], stage.stride))
            channels = arch.width[i + 1]
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(channels, space.head.expand_ratio * channels, arch.width[-1], num_classes,
                                   space.dropout, space.activation)
        blocks = [b for s in stages for layer in s.layers for b in layer.blocks if isinstance(b, InvertedResidual)]
        initialize(self, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.first_conv(x)))

    def logits(self) -> list[nn.Parameter]:
        return [stage.logits for stage in self.stages]

    def stage_weights(self) -> list[np.ndarray]:
        return [stage.weights().detach().cpu().double().numpy() for stage in self.stages]


@dataclass(frozen=True)
class MixedTraining:
    """How a generation's mixed network trains."""

    steps: int
    lr: float
    arch_lr: float
    flops_penalty: float


def train_mixed(net: MixedNet, batches: Iterator, settings: MixedTraining, flops: list[torch.Tensor],
                ctx: DistContext = DistContext(), on_step: Callable[[], None] | None = None) -> float:
    """Train ``net`` for ``settings.steps`` steps; ``flops[i][k]`` is candidate ``k`` of stage
    ``i``'s share of the penalty. Returns the mean loss of the last quarter of the steps."""
    logits = net.logits()
    weights = [p for p in net.parameters() if all(p is not q for q in logits)]
    weight_opt = torch.optim.SGD(weights, lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    logit_opt = torch.optim.Adam(logits, lr=settings.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weight_opt, settings.steps)
    losses = []
    net.train()
    for _ in range(settings.steps):
        images, labels = next(batches)
        loss = F.cross_entropy(net(images), labels)
        if settings.flops_penalty:
            expected = sum((stage.weights() * cost).sum() for stage, cost in zip(net.stages, flops))
            loss = loss + settings.flops_penalty * expected
        weight_opt.zero_grad(set_to_none=True)
        logit_opt.zero_grad(set_to_none=True)
        loss.backward()
        all_reduce_gradients(list(net.parameters()), ctx)
        weight_opt.step()
        logit_opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step()
    return float(np.mean(losses[-max(1, len(losses) // 4):]))


def relative_flops(space: SearchSpace, candidates: list[list[Block]]) -> list[np.ndarray]:
    """Per stage, what each candidate adds to the largest subnet over the stage's cheapest,
    in units of the space's largest subnet's MFLOPs."""
    reference = largest_mflops(space)
    result = []
    for i, blocks in enumerate(candidates):
        mflops = np.array([candidate_mflops(space, i, b) for b in blocks])
        result.append((mflops - mflops.min()) / reference)
    return result
