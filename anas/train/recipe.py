"""Pieces of the training recipe (REFERENCE section 4) that the loop puts together:
parameter groups, the learning-rate schedule, the device and mixed precision."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from anas.errors import AnasError


def batchnorm_parameters(modules) -> list[torch.nn.Parameter]:
    """The scales and shifts of the BatchNorm layers among ``modules``."""
    return [p for m in modules if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters(recurse=False)]


TRAIN_ONLY: dict[str, Callable[[torch.nn.Module], list[torch.nn.Parameter]]] = {
    "all": lambda model: list(model.parameters()),
    "bn": lambda model: batchnorm_parameters(model.indicator_bns()),  # the BNs the BN-NAS indicator reads
    "all-bn": lambda model: batchnorm_parameters(model.modules()),
}
"""What ``--train-only`` may train: every parameter; the scale and shift of each block's
projection BN (a supernet's ``indicator_bns()``); or those of every BN."""


def freeze_all_but(model: torch.nn.Module, train_only: str) -> int:
    """Let only the parameters that ``TRAIN_ONLY[train_only]`` selects require gradients;
    the others keep their values (BN running statistics still update). Returns how many
    values train."""
    keep = TRAIN_ONLY[train_only](model)
    kept = {id(p) for p in keep}
    for p in model.parameters():
        p.requires_grad_(id(p) in kept)
    return sum(p.numel() for p in keep)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The parameters that require gradients, with weight decay on conv and linear
    weights and none on BN parameters (a private BN's are matrices) and biases."""
    bn = {id(p) for p in batchnorm_parameters(model.modules())}
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim > 1 and id(p) not in bn]
    no_decay = [p for p in trainable if p.ndim <= 1 or id(p) in bn]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then cosine to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def autocast_factory(amp: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A function giving the mixed-precision context of ``--amp`` (a no-op for ``none``)."""
    if amp == "none":
        return nullcontext
    if amp == "fp16" and device.type != "cuda":
        raise AnasError("--amp fp16 needs CUDA; use --amp bf16 or none on the CPU")
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)
