"""Pi-NAS's mean teacher (Peng et al., ICCV 2021), supervised form: an exponential moving
average of the supernet teaches the sampled subnets.

The teacher is a copy of the supernet that gets no gradients; after every optimizer step
each of its tensors moves toward the student's, ``teacher <- m teacher + (1 - m) student``
(parameters and BN statistics alike). Before the step it computes, without gradients,
each sampled subnet's target: with ``--cross-path`` the sampled subnets come in pairs
(A, B) that differ in every setting, each on its own augmented view, and A learns the
teacher's output for B on B's view while B learns the teacher's for A on A's (the mirror
term), weighted by ``--cross-path-weight``; without it each subnet learns the teacher's
output for itself. The teacher runs in training mode (batch statistics), like the
student, without updating its running statistics.

The teacher's term adds to in-place distillation (``kd``): the sampled subnets also learn
the largest subnet's logits, which tie them to the labels (without that tie they would
learn only a teacher that is their own average).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from anas.errors import AnasError
from anas.options import option
from anas.space.arch import Arch
from anas.train.config import TrainConfig
from anas.train.regularizers.kd import soft_cross_entropy
from anas.train.regularizers.regularizer import Regularizer, RegularizerContext, StepState, register_teacher


@register_teacher("none")
class NoTeacher(Regularizer):
    """No teacher besides the largest subnet (in-place distillation, ``kd``)."""


@dataclass(frozen=True, kw_only=True)
class EMATeacherOptions:
    ema_momentum: float | None = option(None, "Momentum m of the mean teacher: teacher <- m teacher + (1 - m) "
                                              "student.", default_text="1 - 10 / total steps, at most 0.999",
                                        min=0, below=1)
    cross_path: bool = option(False, "Pi-NAS cross-path: sampled subnets in pairs that differ in every setting, "
                                     "each on its own augmented view, each learning the teacher's output for the "
                                     "other.")
    cross_path_weight: float = option(1.0, "Weight of the cross-path terms.", min=0, finite=True)
    eval_weights: str = option("student", "Weights that evaluation, predict-fit, search --verify, standalone and "
                                          "export use (teacher: the mean teacher's).",
                               choices=("student", "teacher"))


def cross_path(config: TrainConfig) -> bool:
    """Whether a run trains its sampled subnets in cross-path pairs (``--cross-path``)."""
    return bool(getattr(config.options_for("teacher"), "cross_path", False))


def evaluates_teacher(config: TrainConfig) -> bool:
    """Whether a run is evaluated with its mean teacher's weights (``--eval-weights teacher``)."""
    return getattr(config.options_for("teacher"), "eval_weights", "student") == "teacher"


def teacher_weights(config: TrainConfig, state: dict) -> dict[str, Any] | None:
    """The mean teacher's weights in a checkpoint ``state`` of a supervised run with
    ``config`` (the run builds its teacher after ``--regularizer``'s), or None when the
    run has none."""
    if config.teacher != "ema":
        return None
    return state["regularizers"][len(config.regularizer)]["teacher"]


def momentum_of(options: EMATeacherOptions, total_steps: int) -> float:
    """The teacher's momentum: ``--ema-momentum``, or :func:`default_momentum`."""
    return options.ema_momentum if options.ema_momentum is not None else default_momentum(total_steps)


def default_momentum(total_steps: int) -> float:
    """``1 - 10 / total steps`` (at most 0.999, at least 0): the teacher's memory spans
    about a tenth of the run, so a run of a few hundred steps does not keep a teacher close
    to its initialization (Pi-NAS's 0.999 is for 100 ImageNet epochs)."""
    return min(0.999, max(0.0, 1.0 - 10.0 / max(total_steps, 1)))


def partner(index: int, cross_path: bool) -> int:
    """Whose teacher output the ``index``-th sampled subnet learns: its pair's, or its own."""
    return index ^ 1 if cross_path else index


@register_teacher("ema", options=EMATeacherOptions)
class MeanTeacher(Regularizer):
    """The sampled subnets learn an EMA teacher's outputs (module docstring)."""

    roles = ("middle",)

    def __init__(self, context: RegularizerContext):
        options = context.options
        self.student = context.supernet
        self.teacher = copy.deepcopy(context.supernet)
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.momentum = momentum_of(options, context.total_steps)
        self.cross_path = options.cross_path
        self.weight = options.cross_path_weight if options.cross_path else 1.0
        self.autocast = context.autocast
        self.targets: list[torch.Tensor] = []

    @staticmethod
    def check_config(config: TrainConfig) -> None:
        """Cross-path training pairs the sampled subnets."""
        sampled = config.num_subnets - 2
        if cross_path(config) and (sampled < 2 or sampled % 2):
            raise AnasError(f"--cross-path trains the sampled subnets in pairs: --num-subnets {config.num_subnets} "
                            f"gives {sampled}; use an even number of sampled subnets (--num-subnets 4, 6, ...)")

    @torch.no_grad()
    def before_step(self, step: StepState) -> None:
        self.teacher.train()
        self.targets = []
        with self.teacher.frozen_bn_stats():  # its running statistics stay the EMA of the student's
            for i in range(len(step.middle)):
                j = partner(i, self.cross_path)
                self.teacher.set_active(step.middle[j])
                with self.autocast():  # as the student's forward passes
                    self.targets.append(self.teacher(step.view_of(j)).float())

    def loss(self, step: StepState, role: str, arch: Arch, logits: torch.Tensor) -> torch.Tensor:
        return self.weight * soft_cross_entropy(logits, self.targets[step.current])

    @torch.no_grad()
    def after_step(self, step: StepState) -> None:
        update_ema(self.teacher, self.student, self.momentum)

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "momentum": self.momentum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])


def update_ema(teacher: torch.nn.Module, student: torch.nn.Module, momentum: float) -> None:
    """Every floating-point tensor of ``teacher`` (parameters and buffers) becomes
    ``momentum * teacher + (1 - momentum) * student``; other buffers (counters) are copied."""
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    for name, tensor in teacher_state.items():
        source = student_state[name].detach()
        if tensor.is_floating_point():
            tensor.mul_(momentum).add_(source.to(tensor.dtype), alpha=1.0 - momentum)
        else:
            tensor.copy_(source)
