"""The predictor-kind protocol: a model of a subnet's accuracy from its settings.

A kind is a subclass of :class:`Predictor` registered with
:func:`register_predictor_kind`. It implements ``fit`` (a class method: from subnets and
their measured top-1 to a fitted predictor), ``predict`` (one score per subnet of an
``ArchBatch``, higher meaning more accurate), ``save_model`` (its own files in a predictor
folder) and ``load_model``. The folder's ``predictor.json`` (written by
:mod:`anas.predict.folder`) records the kind, so ``anas search`` and ``--estimator
predictor`` load any kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anas.errors import AnasError
from anas.registry import Registry
from anas.space.arch import Arch, ArchBatch
from anas.space.space import SearchSpace


class PredictorError(AnasError):
    """A predictor folder that is missing, corrupt or of another space."""


@dataclass(frozen=True)
class PredictorConfig:
    """Fitting options. Every kind reads the ones that apply to it: ``seed`` for all, the
    rest are LightGBM's. ``None`` means: chosen from the number of training records, so
    the same defaults work from a few hundred to tens of thousands of records."""

    n_estimators: int = 1000
    learning_rate: float = 0.02
    num_leaves: int | None = None  # min(31, max(4, n // 10))
    min_child_samples: int | None = None  # max(2, min(20, n // 25))
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    seed: int = 0


class Predictor:
    """Base of every kind: the space and number of classes it was fitted for, and what its
    folder's ``predictor.json`` says about it (``meta``)."""

    def __init__(self, space: SearchSpace, num_classes: int, meta: dict[str, Any] | None = None):
        self.space = space
        self.num_classes = num_classes
        self.meta = dict(meta or {})

    @classmethod
    def fit(cls, space: SearchSpace, batch: ArchBatch, acc1: np.ndarray, config: PredictorConfig,
            num_classes: int | None = None) -> Predictor:
        raise NotImplementedError

    def predict(self, batch: ArchBatch) -> np.ndarray:
        raise NotImplementedError

    def save_model(self, folder: Path) -> dict[str, Any]:
        """Write the kind's own files into ``folder``; returns what ``predictor.json`` should
        also hold for ``load_model`` (file names, feature order, library versions)."""
        raise NotImplementedError

    @classmethod
    def load_model(cls, folder: Path, space: SearchSpace, num_classes: int, meta: dict[str, Any]) -> Predictor:
        raise NotImplementedError

    def predict_archs(self, archs: list[Arch]) -> np.ndarray:
        return self.predict(ArchBatch.from_archs(archs))

    def check_space(self, space: SearchSpace, where: str) -> None:
        """Refuse to rank subnets of another space."""
        if space != self.space:
            raise PredictorError(f"the predictor was fitted on space {self.space.name}, but {where} is of space "
                                 f"{space.name}")


PREDICTOR_KINDS: Registry[type[Predictor]] = Registry("predictor kind")
register_predictor_kind = PREDICTOR_KINDS.register
