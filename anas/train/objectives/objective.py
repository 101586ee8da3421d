"""The objective protocol: what one training step of a supernet optimizes.

An objective is a class registered with :func:`register_objective` (with the dataclass of
its own options, if it has any; it reads them as ``context.options``) and chosen with
``anas train --objective NAME``; it is built once per run as ``cls(context)``. It says how
many augmented views of each image the loader delivers (``views(config)``), which
trainable modules it adds to the supernet's (``modules``, e.g. a projection head), which
regularizers the run builds, and runs a step (``step``). Class attributes give the
defaults it sets for options left unset (``defaults``) and whether it trains without
labels (``label_free``: the data then gets a probe split and subnets are measured by a
linear probe). Its ``state_dict`` goes into the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from anas.nn.supernet import Supernet
from anas.registry import NoOptions
from anas.runtime.distributed import DistContext
from anas.space.search_space import SearchSpace
from anas.train.config import TrainConfig
from anas.train.registries import OBJECTIVES, register_objective

if TYPE_CHECKING:  # the step is loaded by training only, not by loading a run
    from anas.train.step import SandwichParts, StepLosses

__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "build_objective", "register_objective"]


@dataclass
class ObjectiveContext:
    space: SearchSpace
    config: TrainConfig
    supernet: Supernet  # on the run's device
    total_steps: int  # optimizer steps of the whole schedule
    train_images: int  # images of the training split (all ranks)
    dist: DistContext
    options: Any = field(default_factory=NoOptions)  # the objective's own (registered with it)


class Objective:
    """Base class of objectives; a plug-in overrides ``step`` and what else it needs."""

    label_free: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    uses_regularizers: ClassVar[bool] = False  # the run builds --regularizer's and --teacher's plug-ins for it

    def __init__(self, context: ObjectiveContext):
        pass

    @staticmethod
    def check_config(config: TrainConfig) -> None:
        """Refuse options that do not go with this objective (one-line ``AnasError``)."""

    @staticmethod
    def views(config: TrainConfig) -> int:
        """Augmented views of each image per step (the loader stacks them ``[N, V, C, H, W]``
        when more than one)."""
        return 1

    @staticmethod
    def teacher_weights(config: TrainConfig, state: dict[str, Any]) -> dict[str, Any] | None:
        """The mean teacher's supernet weights in a checkpoint ``state``, or None."""
        return None

    def modules(self) -> list[torch.nn.Module]:
        """Trainable modules besides the supernet (the optimizer trains them too)."""
        return []

    def teacher_model(self, parts: SandwichParts) -> torch.nn.Module | None:
        """The mean-teacher supernet that ``--eval-weights teacher`` evaluates, or None."""
        return None

    def step(self, parts: SandwichParts, images: torch.Tensor, labels: torch.Tensor, index: int) -> StepLosses:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def build_objective(name: str, context: ObjectiveContext) -> Objective:
    return OBJECTIVES.get(name)(context)
