"""The regularizer protocol: loss terms and hooks around a sandwich step.

A regularizer is a class registered with :func:`register_regularizer` (with the dataclass
of its own options, if it has any; it reads them as ``context.options``), built once per
run as ``cls(context)``; ``--regularizer NAME`` (repeatable; default ``kd``) chooses the
ones a run uses. A teacher (``--teacher``, :func:`register_teacher`) is a regularizer too:
the run builds it after ``--regularizer``'s. In each step it sees the step's :class:`StepState` before anything runs
(``before_step``), adds a loss term to the subnets of the ``roles`` it names (``loss``:
``largest``, ``middle`` or ``smallest``), and sees the step again after the optimizer
update (``after_step``): an EMA teacher updates there. Its ``state_dict`` goes into the
checkpoint. The largest subnet always learns from the labels; every other subnet learns
only from the regularizers' terms, so the configured ones must cover ``middle`` and
``smallest`` (in-place distillation, ``kd``, does).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from anas.errors import AnasError
from anas.nn.supernet import Supernet
from anas.registry import NoOptions
from anas.space.arch import Arch
from anas.space.search_space import SearchSpace
from anas.train.config import TrainConfig
from anas.train.registries import REGULARIZERS, TEACHERS, register_regularizer, register_teacher

__all__ = ["REGULARIZERS", "TEACHERS", "Regularizer", "RegularizerContext", "StepState", "build_regularizers",
           "check_regularizers", "register_regularizer", "register_teacher"]

@dataclass
class RegularizerContext:
    space: SearchSpace
    config: TrainConfig
    supernet: Supernet
    total_steps: int = 0  # optimizer steps of the whole schedule
    autocast: Callable[[], AbstractContextManager] = nullcontext  # the run's mixed-precision context
    options: Any = field(default_factory=NoOptions)  # the regularizer's own (registered with it)


@dataclass
class StepState:
    """What a sandwich step knows while it runs."""

    images: torch.Tensor  # what the largest and the smallest subnets see (the first view)
    labels: torch.Tensor
    middle: list[Arch]  # the sampled subnets of this step
    index: int  # global step number (0 for the first)
    teacher_logits: torch.Tensor | None = None  # the largest subnet's, detached, once it ran
    notes: dict[str, Any] = field(default_factory=dict)  # for regularizers to pass things along
    views: tuple[torch.Tensor, ...] = ()  # augmented views of the batch (one, or two for --cross-path)
    current: int = -1  # which sampled subnet is running (index into ``middle``)

    def view_of(self, index: int) -> torch.Tensor:
        """The view the ``index``-th sampled subnet sees: they take the views in turn."""
        views = self.views or (self.images,)
        return views[index % len(views)]


class Regularizer:
    """Base class: every hook does nothing, so a plug-in overrides only what it needs."""

    roles: tuple[str, ...] = ()

    def __init__(self, context: RegularizerContext):
        pass

    def before_step(self, step: StepState) -> None:
        pass

    def loss(self, step: StepState, role: str, arch: Arch, logits: torch.Tensor) -> torch.Tensor:
        """The term added to the loss of a subnet of ``role`` (one of ``roles``)."""
        raise NotImplementedError

    def after_step(self, step: StepState) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def check_regularizers(names: list[str]) -> None:
    """Every name is registered, and together they give the sampled and the smallest
    subnets a loss."""
    covered = {role for name in names for role in REGULARIZERS.get(name).roles}
    missing = [role for role in ("middle", "smallest") if role not in covered]
    if missing:
        raise AnasError(f"--regularizer {' '.join(names) or '(none)'}: nothing trains the {' and '.join(missing)} "
                        f"subnet(s); add kd (in-place distillation)")


def build_regularizers(config: TrainConfig, context: RegularizerContext) -> list[Regularizer]:
    """The run's regularizers: ``--regularizer``'s, then ``--teacher``'s, each with its
    own options."""
    built = [REGULARIZERS.get(name)(replace(context, options=config.options_for("regularizer", name)))
             for name in config.regularizer]
    return [*built, TEACHERS.get(config.teacher)(replace(context, options=config.options_for("teacher")))]
