"""The predictor-kind protocol: a model of a subnet's accuracy from its settings.

A kind is a subclass of :class:`Predictor` registered with
:func:`register_predictor_kind` (with the dataclass of its own options, if it has any:
``options=...``; ``anas predict-fit`` offers them with ``--kind``). It implements ``fit``
(a class method: from subnets, their measured top-1, its options and a seed to a fitted
predictor), ``predict`` (one score per subnet of an
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
from anas.options import option
from anas.registry import Registry
from anas.space.arch import Arch, ArchBatch
from anas.space.search_space import SearchSpace

ACCURACY_LABEL = "predicted top-1 (%)"  # what a predictor of acc1 gives


class PredictorError(AnasError):
    """A predictor folder that is missing, corrupt or of another space."""


@dataclass(frozen=True, kw_only=True)
class PenaltyOptions:
    """The L2 penalty the fitted kinds share."""

    reg_lambda: float = option(1.0, "L2 penalty of the fit: LightGBM's lambda_l2, the linear kind's ridge lambda "
                                    "(0: none).", min=0, finite=True)


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
    def fit(cls, space: SearchSpace, batch: ArchBatch, acc1: np.ndarray, options: Any = None,
            num_classes: int | None = None, seed: int = 0) -> Predictor:
        """A predictor of ``acc1`` fitted on ``batch``; ``options``: the kind's own (None: its
        defaults)."""
        raise NotImplementedError

    @classmethod
    def from_supernet(cls, supernet, options: Any = None, num_classes: int | None = None) -> Predictor:
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
"""Predictor kinds by name (``anas predict-fit --kind``)."""
register_predictor_kind = PREDICTOR_KINDS.register
