"""The estimator protocol: scores of candidate subnets in attentive sampling.

An estimator is a class registered with :func:`register_estimator`, built once per run as
``cls(context)``. ``score`` returns one number per candidate, higher meaning better; under
``torchrun`` every rank must return the same scores (average anything that depends on the
rank's batch with ``context.all_reduce_mean``). An estimator that needs options of the run
checks them in a ``check_config(config)`` class method, called when the configuration is
built, so that a missing option fails before any work. One that reads the labels sets
``needs_labels = True``: label-free objectives (``--objective contrastive``) refuse it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from anas.nn.supernet import Supernet
from anas.registry import Registry
from anas.space.arch import Arch
from anas.space.space import SearchSpace

if TYPE_CHECKING:
    from anas.train.config import TrainConfig


@dataclass
class EstimatorContext:
    space: SearchSpace
    config: TrainConfig
    supernet: Supernet
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor]  # average over ranks (identity alone)
    autocast: Callable[[], AbstractContextManager]  # the run's mixed-precision context


class Estimator(Protocol):
    def score(self, archs: list[Arch], images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        """One score per subnet of ``archs``; higher is better."""


ESTIMATORS: Registry[Callable[[EstimatorContext], Estimator]] = Registry("estimator")
register_estimator = ESTIMATORS.register


def build_estimator(name: str, context: EstimatorContext) -> Estimator:
    return ESTIMATORS.get(name)(context)


def check_estimator_config(name: str, config: TrainConfig) -> None:
    check = getattr(ESTIMATORS.get(name), "check_config", None)
    if check is not None:
        check(config)
