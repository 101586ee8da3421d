"""The supervised objective: the sandwich rule on labels (AttentiveNAS), with the
regularizers' terms for the other subnets (in-place distillation, Pi-NAS's mean teacher)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from anas.train.objectives.objective import Objective, register_objective
from anas.train.regularizers import check_regularizers
from anas.train.regularizers.teacher import MeanTeacher, cross_path, teacher_weights

if TYPE_CHECKING:  # the step is loaded by training only, not by loading a run
    from anas.train.step import SandwichParts, StepLosses


@register_objective("supervised")
class SupervisedObjective(Objective):
    """:func:`~anas.train.step.sandwich_step`; two views per image with ``--cross-path``."""

    defaults = {"sampler": "bestup-k3", "teacher": "none"}
    uses_regularizers = True

    @staticmethod
    def check_config(config) -> None:
        check_regularizers(config.regularizer)

    @staticmethod
    def views(config) -> int:
        return 2 if cross_path(config) else 1

    @staticmethod
    def teacher_weights(config, state: dict[str, Any]) -> dict[str, Any] | None:
        return teacher_weights(config, state)

    def teacher_model(self, parts: SandwichParts) -> torch.nn.Module | None:
        return next((r.teacher for r in parts.regularizers if isinstance(r, MeanTeacher)), None)

    def step(self, parts: SandwichParts, images: torch.Tensor, labels: torch.Tensor, index: int) -> StepLosses:
        from anas.train.step import sandwich_step  # only training loads the step (loading a run does not)

        return sandwich_step(parts, images, labels, index)
