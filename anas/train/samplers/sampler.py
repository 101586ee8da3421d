"""The sampler protocol: which subnets a sandwich step trains between the largest and the
smallest.

A sampler is a class registered with :func:`register_sampler` (with the dataclass of its
own options, if it has any: ``options=...``; it reads them as ``context.options``). It is
built once per run as ``cls(context, **params)`` (``params`` from a parametrized name such
as ``bestup-k3``)
and then asked for one subnet per middle slot of every step. Its ``state_dict`` goes into
the checkpoint, so a resumed run draws the same subnets as an uninterrupted one. Under
``torchrun`` every rank builds the same sampler with the same seed and must draw the same
subnets (scores that depend on a rank's data are averaged, see the estimators). A
sampler that never scores candidates sets ``scores_candidates = False`` (then it is
label-free whatever ``--estimator`` says).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from anas.registry import NoOptions
from anas.space.arch import Arch
from anas.space.search_space import SearchSpace
from anas.train.config import TrainConfig
from anas.train.estimators.estimator import Estimator
from anas.train.registries import SAMPLERS, register_sampler


@dataclass
class SamplerContext:
    """What a sampler may use: the space, the run's configuration and seed, the sampler's
    own options, and a way to build the configured estimator (only samplers that score
    candidates call it)."""

    space: SearchSpace
    config: TrainConfig
    num_classes: int
    make_estimator: Callable[[], Estimator]
    steps_per_epoch: int = 0
    heldout_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None  # i-th batch of --holdout
    options: Any = field(default_factory=NoOptions)  # the sampler's own (registered with it)

    @property
    def seed(self) -> int:
        return self.config.seed


class Sampler(Protocol):
    """Optionally also ``epoch_end(run_dir) -> dict``: files the sampler writes into the run
    folder at each epoch's end, and numbers for metrics.csv (called on rank 0)."""

    def sample(self, images: torch.Tensor, labels: torch.Tensor) -> Arch:
        """One subnet for this step (``images`` and ``labels`` are the step's batch)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


__all__ = ["SAMPLERS", "Sampler", "SamplerContext", "build_sampler", "register_sampler"]


def build_sampler(name: str, context: SamplerContext) -> Sampler:
    cls, params = SAMPLERS.resolve(name)
    return cls(context, **params)
