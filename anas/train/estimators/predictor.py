"""Candidates scored by a fitted accuracy predictor (``--estimator predictor --predictor DIR``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anas.errors import AnasError
from anas.options import option
from anas.predict.folder import load_predictor
from anas.space.arch import Arch
from anas.train.estimators.estimator import EstimatorContext, register_estimator


@dataclass(frozen=True, kw_only=True)
class PredictorEstimatorOptions:
    predictor: str | None = option(None, "Predictor folder of anas predict-fit that scores the candidates.")


@register_estimator("predictor", options=PredictorEstimatorOptions)
class PredictorEstimator:
    """The predicted top-1 of all candidates in one call (deterministic: every rank agrees)."""

    def __init__(self, context: EstimatorContext):
        self.predictor = load_predictor(context.options.predictor)
        self.predictor.check_space(context.space, "this run")

    @staticmethod
    def check_config(config) -> None:
        if not config.options_for("estimator").predictor:
            raise AnasError("--estimator predictor needs --predictor DIR (a folder written by anas predict-fit)")

    def score(self, archs: list[Arch], images=None, labels=None) -> np.ndarray:
        return self.predictor.predict_archs(archs)
