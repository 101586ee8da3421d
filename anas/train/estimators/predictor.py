"""Candidates scored by a fitted accuracy predictor (``--estimator predictor --predictor DIR``)."""

from __future__ import annotations

import numpy as np

from anas.errors import AnasError
from anas.predict.folder import load_predictor
from anas.space.arch import Arch
from anas.train.estimators.base import EstimatorContext, register_estimator


@register_estimator("predictor")
class PredictorEstimator:
    """The predicted top-1 of all candidates in one call (deterministic: every rank agrees)."""

    def __init__(self, context: EstimatorContext):
        self.predictor = load_predictor(context.config.predictor)
        self.predictor.check_space(context.space, "this run")

    @staticmethod
    def check_config(config) -> None:
        if not config.predictor:
            raise AnasError("--estimator predictor needs --predictor DIR (a folder written by anas predict-fit)")

    def score(self, archs: list[Arch], images=None, labels=None) -> np.ndarray:
        return self.predictor.predict_archs(archs)
