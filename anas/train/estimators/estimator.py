"""The estimator protocol: scores of candidate subnets in attentive sampling.

An estimator is a class registered with :func:`register_estimator` (with the dataclass of
its own options, if it has any; it reads them as ``context.options``), built once per run
as ``cls(context)``. ``score`` returns one number per candidate, higher meaning better;
under ``torchrun`` every rank must return the same scores (average anything that depends
on the rank's batch with ``context.all_reduce_mean``). An estimator with rules about the
rest of the run checks them in a ``check_config(config)`` static method, called when the
configuration is built, so that a missing option fails before any work. One that reads
the labels sets ``needs_labels = True``: label-free objectives (``--objective
contrastive``) refuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from anas.nn.supernet import Supernet
from anas.registry import NoOptions
from anas.space.arch import Arch
from anas.space.search_space import SearchSpace
from anas.train.config import TrainConfig
from anas.train.registries import ESTIMATORS, register_estimator

__all__ = ["ESTIMATORS", "Estimator", "EstimatorContext", "build_estimator", "register_estimator"]


@dataclass
class EstimatorContext:
    space: SearchSpace
    config: TrainConfig
    supernet: Supernet
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor]  # average over ranks (identity alone)
    autocast: Callable[[], AbstractContextManager]  # the run's mixed-precision context
    options: Any = field(default_factory=NoOptions)  # the estimator's own (registered with it)


class Estimator(Protocol):
    def score(self, archs: list[Arch], images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        """One score per subnet of ``archs``; higher is better."""


def build_estimator(name: str, context: EstimatorContext) -> Estimator:
    return ESTIMATORS.get(name)(context)
