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

from anas.checks import check_at_least, check_at_most, check_fraction, check_positive, check_seed
from anas.errors import AnasError
from anas.nn.bn_indicator import REDUCTIONS
from anas.registry import Registry
from anas.space.arch import Arch, ArchBatch
from anas.space.space import SearchSpace

ACCURACY_LABEL = "predicted top-1 (%)"  # what a predictor of acc1 gives
MAX_ROUNDS = 1_000_000
MAX_LEAVES = 131_072  # LightGBM's own limit


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
    bn_reduce: str = "sum"  # the bn kind: sum or mean over a subnet's blocks


    def __post_init__(self) -> None:
        """Refuse values LightGBM would stop on (with its own traceback) or misread."""
        check_at_least(self.n_estimators, 1, "--n-estimators")
        check_at_most(self.n_estimators, MAX_ROUNDS, "--n-estimators")
        check_positive(self.learning_rate, "--learning-rate")
        if self.num_leaves is not None:
            check_at_least(self.num_leaves, 2, "--num-leaves", " (a tree needs two leaves)")
            check_at_most(self.num_leaves, MAX_LEAVES, "--num-leaves")
        if self.min_child_samples is not None:
            check_at_least(self.min_child_samples, 1, "min_child_samples")
        check_fraction(self.subsample, "subsample", low_open=True)
        check_fraction(self.colsample_bytree, "colsample_bytree", low_open=True)
        check_at_least(self.reg_lambda, 0, "reg_lambda")
        check_seed(self.seed)
        if self.bn_reduce not in REDUCTIONS:
            raise AnasError(f"unknown --bn-reduce {self.bn_reduce!r}: use {' or '.join(REDUCTIONS)}")


class Predictor:
    """Base of every kind: the space and number of classes it was fitted for, and what its
    folder's ``predictor.json`` says about it (``meta``).

    A zero-cost kind (``zero_cost = True``) is not fitted on records: it is read from a
    trained supernet by ``from_supernet``, and records only measure it. ``score_label``
    says what its predictions are (an accuracy, or another score that ranks subnets). The
    column a fitted kind predicts is ``meta["target"]`` (``acc1`` unless
    ``predict-fit --target`` named another)."""

    zero_cost: bool = False
    explainable: bool = False  # anas.predict.explain can read it (predict-fit --explain)

    def __init__(self, space: SearchSpace, num_classes: int, meta: dict[str, Any] | None = None):
        self.space = space
        self.num_classes = num_classes
        self.meta = dict(meta or {})

    @property
    def score_label(self) -> str:
        """``predicted top-1 (%)``, or ``predicted COLUMN`` for a model of another target (a
        zero-cost kind whose scores are no accuracy says so by a class attribute)."""
        target = self.meta.get("target", "acc1")
        return ACCURACY_LABEL if target == "acc1" else f"predicted {target}"

    @classmethod
    def fit(cls, space: SearchSpace, batch: ArchBatch, acc1: np.ndarray, config: PredictorConfig,
            num_classes: int | None = None) -> Predictor:
        raise NotImplementedError

    @classmethod
    def from_supernet(cls, supernet, config: PredictorConfig, num_classes: int) -> Predictor:
        """A zero-cost kind's predictor, read from a trained :class:`~anas.nn.supernet.Supernet`."""
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

    @staticmethod
    def saved_array(saved: dict[str, Any], key: str, shape: tuple[int, ...], space: SearchSpace, where: Path,
                    what: str) -> np.ndarray:
        """``saved[key]`` (from the folder's ``predictor.json``, ``where``) as a float array
        of the ``shape`` that ``space`` needs, with finite values; anything else is a
        one-line ``PredictorError`` naming ``what``."""
        try:
            values = np.asarray(saved[key], dtype=np.float64)
        except (KeyError, TypeError, ValueError):
            raise PredictorError(f"{where}: {what} must be a {len(shape)}-d array of numbers") from None
        if values.shape != shape:
            raise PredictorError(f"{where}: {what} have shape {values.shape}, space {space.name} needs {shape}")
        if not np.all(np.isfinite(values)):
            raise PredictorError(f"{where}: {what} must be finite numbers")
        return values

    def check_space(self, space: SearchSpace, where: str) -> None:
        """Refuse to rank subnets of another space."""
        if space != self.space:
            raise PredictorError(f"the predictor was fitted on space {self.space.name}, but {where} is of space "
                                 f"{space.name}")


PREDICTOR_KINDS: Registry[type[Predictor]] = Registry("predictor kind")
register_predictor_kind = PREDICTOR_KINDS.register
