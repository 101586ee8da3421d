"""One training step, read top to bottom: of the sandwich rule for a supernet, or of one
static network trained on its own (``anas standalone``).

The largest subnet learns from the labels (label smoothing, dropout, drop-connect); the
sampled subnets and then the smallest learn from the regularizers' terms (by default
in-place distillation from the largest's detached logits). Gradients accumulate over the
subnets, are averaged over ranks, clipped by value, and one optimizer step is taken.
Bookkeeping (metrics, checkpoints, progress) lives in :mod:`anas.train.loop`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from anas.nn.static import resize
from anas.nn.supernet import Supernet
from anas.runtime.distributed import DistContext, all_reduce_gradients
from anas.space.arch import Arch
from anas.space.sampling import differing_arch
from anas.space.search_space import SearchSpace
from anas.train.regularizers import Regularizer, StepState
from anas.train.samplers import Sampler


@dataclass
class StepParts:
    """What every step uses; the loop builds it once per run."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: Callable[[], AbstractContextManager]
    dist: DistContext
    label_smoothing: float
    grad_clip: float  # by value; 0: off


@dataclass
class SandwichParts(StepParts):
    """What a sandwich step adds: the subnets and the regularizers' terms."""

    model: Supernet
    sampler: Sampler
    regularizers: list[Regularizer]
    largest: Arch
    smallest: Arch
    num_middle: int  # sampled subnets per step
    dropout: float  # largest subnet only
    drop_connect: float  # largest subnet only
    drop_connect_stages: int
    space: SearchSpace | None = None  # needed with cross_path
    cross_path: bool = False  # sampled subnets in pairs that differ in every setting, one view each (Pi-NAS)


@dataclass(frozen=True)
class StepLosses:
    largest: float  # the label loss (of the largest subnet, in a sandwich step)
    others: float  # mean loss of the sampled and the smallest subnets


def sandwich_step(parts: SandwichParts, images: torch.Tensor, labels: torch.Tensor, index: int) -> StepLosses:
    model, scaler = parts.model, parts.scaler
    model.train()

    # the batch: one view, or two (N, 2, C, H, W) for cross-path training
    views = tuple(images.unbind(1)) if images.dim() == 5 else (images,)
    images = views[0]
    # which subnets: the sampler may score candidates on this batch
    middle = sample_middle(parts, images, labels)
    step = StepState(images, labels, middle, index, views=views)
    for regularizer in parts.regularizers:
        regularizer.before_step(step)
    parts.optimizer.zero_grad(set_to_none=True)

    # the largest subnet learns from the labels
    model.set_active(parts.largest, dropout=parts.dropout, drop_connect=parts.drop_connect,
                     drop_connect_stages=parts.drop_connect_stages)
    with parts.autocast():
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=parts.label_smoothing)
        loss = add_terms(loss, parts.regularizers, step, "largest", parts.largest, logits)
    scaler.scale(loss).backward()
    step.teacher_logits = logits.detach()

    # the sampled subnets, then the smallest, learn from the regularizers' terms
    others = 0.0
    for role, current, arch in [*(("middle", i, arch) for i, arch in enumerate(middle)), ("smallest", -1, parts.smallest)]:
        model.set_active(arch)
        step.current = current
        with parts.autocast():
            sub_loss = add_terms(None, parts.regularizers, step, role, arch,
                                 model(step.view_of(current) if role == "middle" else images))
        scaler.scale(sub_loss).backward()
        others += float(sub_loss.detach())

    optimizer_step(parts)
    for regularizer in parts.regularizers:
        regularizer.after_step(step)
    return StepLosses(float(loss.detach()), others / (len(middle) + 1))


def sample_middle(parts: SandwichParts, images: torch.Tensor, labels: torch.Tensor) -> list[Arch]:
    """The step's sampled subnets: the sampler's, or with ``cross_path`` pairs of a
    sampler's subnet and one that differs from it in every setting (drawn with torch's
    global generator, which checkpoints keep)."""
    if not parts.cross_path:
        return [parts.sampler.sample(images, labels) for _ in range(parts.num_middle)]
    return [arch for pair in sample_pairs(parts, images, labels, parts.num_middle // 2) for arch in pair]


def sample_pairs(parts: SandwichParts, images: torch.Tensor, labels: torch.Tensor,
                 count: int) -> list[tuple[Arch, Arch]]:
    """``count`` pairs of a sampler's subnet and one that differs from it in every setting
    the space allows (the partner drawn with torch's global generator, which checkpoints
    keep)."""
    pairs = []
    for _ in range(count):
        first = parts.sampler.sample(images, labels)
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
        pairs.append((first, differing_arch(parts.space, first, rng)))
    return pairs


def standalone_step(parts: StepParts, images: torch.Tensor, labels: torch.Tensor, resolution: int) -> StepLosses:
    """One step of a static network trained on its own, with the recipe of the supernet's
    largest subnet: label loss with label smoothing, the network's own dropout and
    drop-connect, the input resized to its ``resolution``."""
    parts.model.train()
    parts.optimizer.zero_grad(set_to_none=True)
    with parts.autocast():
        logits = parts.model(resize(images, resolution))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=parts.label_smoothing)
    parts.scaler.scale(loss).backward()
    optimizer_step(parts)
    return StepLosses(float(loss.detach()), 0.0)


def optimizer_step(parts: StepParts) -> None:
    """Average the gradients over ranks, clip them, take one optimizer step."""
    params = [p for group in parts.optimizer.param_groups for p in group["params"]]
    all_reduce_gradients(params, parts.dist)
    parts.scaler.unscale_(parts.optimizer)
    if parts.grad_clip > 0:
        torch.nn.utils.clip_grad_value_(params, parts.grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    parts.scheduler.step()


def add_terms(loss: torch.Tensor | None, regularizers: list[Regularizer], step: StepState, role: str, arch: Arch,
              logits: torch.Tensor) -> torch.Tensor:
    """``loss`` plus the terms of the regularizers that act on subnets of ``role``."""
    for regularizer in regularizers:
        if role in regularizer.roles:
            term = regularizer.loss(step, role, arch, logits)
            loss = term if loss is None else loss + term
    return loss
