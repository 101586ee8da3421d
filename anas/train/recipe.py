"""Pieces of the training recipe (REFERENCE section 4) that the loop puts together:
parameter groups, the learning-rate schedule, the device and mixed precision."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from anas.errors import AnasError


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv and linear weights; none on BN parameters and biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
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
