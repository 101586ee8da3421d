"""In-place distillation (BigNAS): the largest subnet teaches the others in the same step."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from anas.space.arch import Arch
from anas.train.regularizers.regularizer import Regularizer, StepState, register_regularizer


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the teacher's softmax (temperature 1)."""
    return -(F.softmax(teacher_logits.float(), dim=1) * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


@register_regularizer("kd")
class InplaceDistillation(Regularizer):
    """The sampled and the smallest subnets learn the largest's detached logits (soft
    cross-entropy)."""

    roles = ("middle", "smallest")

    def loss(self, step: StepState, role: str, arch: Arch, logits: torch.Tensor) -> torch.Tensor:
        return soft_cross_entropy(logits, step.teacher_logits)
