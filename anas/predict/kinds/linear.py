"""The FOX-NAS predictor kind (``--kind linear``): a linear model on stage-level features,
so every coefficient says what a choice is worth.

Features, per stage: depth, width, expand ratio, kernel size, depth x expand and
depth x kernel (continuous values, not one-hot, as FOX-NAS's regressions); then the
resolution, the first conv's width and the head's width; a feature the space holds
constant (one choice) is left out. The model is ridge regression
with ``--reg-lambda`` (default 1) on standardized features, fitted in
closed form. Ridge rather than ordinary least squares because a 64-record run of the
``attentive-nas`` space fits 51 records with 39 features: least squares is barely
determined there and the collinear pairs (depth and depth x kernel) swing; a small fixed
penalty keeps every coefficient finite and readable without a tuning loop
(``--reg-lambda 0`` gives least squares). Standard errors come from the ridge estimator's
covariance, sigma^2 (Z'Z + lambda)^-1 Z'Z (Z'Z + lambda)^-1, with sigma^2 the residual
variance over ``n - 1 - trace(hat)`` degrees of freedom.

The coefficients (in the features' own units), their covariance and the features'
means on the training records live in ``predictor.json``; there is no model file.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from anas.predict.kinds.predictor_kind import PenaltyOptions, Predictor, PredictorError, register_predictor_kind
from anas.space.arch import ArchBatch
from anas.space.search_space import SearchSpace

STAGE_FEATURES = ("depth", "width", "expand", "kernel", "depth_x_expand", "depth_x_kernel")


def _all_feature_names(space: SearchSpace) -> list[str]:
    per_stage = [f"{stage.name}.{feature}" for stage in space.stages for feature in STAGE_FEATURES]
    return [*per_stage, "resolution", "first_conv.width", "head.width"]


def _varying(space: SearchSpace) -> list[bool]:
    """Which of the features a subnet of ``space`` can change: a setting with one choice
    is a constant (in the intercept), and its product with depth would repeat depth."""
    keep = []
    for stage in space.stages:
        depth, width = len(stage.depths) > 1, len(stage.widths) > 1
        expand, kernel = len(stage.expand_ratios) > 1, len(stage.kernel_sizes) > 1
        keep += [depth, width, expand, kernel, depth and expand, depth and kernel]
    return keep + [len(space.resolutions) > 1, len(space.first_conv.widths) > 1, len(space.head.widths) > 1]


def linear_feature_names(space: SearchSpace) -> list[str]:
    """Per stage depth, width, expand, kernel, depth_x_expand, depth_x_kernel (``STAGE.NAME``),
    then resolution, first_conv.width and head.width: those the space lets vary."""
    return [name for name, keep in zip(_all_feature_names(space), _varying(space)) if keep]


def linear_features(space: SearchSpace, batch: ArchBatch) -> np.ndarray:
    """One row per subnet, columns in :func:`linear_feature_names` order."""
    depth = batch.depth.astype(np.float64)
    width = batch.width[:, 1:-1].astype(np.float64)
    expand, kernel = batch.expand_ratio.astype(np.float64), batch.kernel_size.astype(np.float64)
    per_stage = np.stack([depth, width, expand, kernel, depth * expand, depth * kernel], axis=2)
    rest = np.stack([batch.resolution, batch.width[:, 0], batch.width[:, -1]], axis=1).astype(np.float64)
    return np.concatenate([per_stage.reshape(len(batch), -1), rest], axis=1)[:, _varying(space)]


def fit_ridge(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float, np.ndarray, float]:
    """Ridge on standardized columns. Returns the coefficients and intercept in the
    columns' own units, the coefficients' covariance, and the residual variance."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # a constant column gets a zero coefficient
    z = (x - mean) / scale
    gram = z.T @ z
    inverse = np.linalg.pinv(gram + penalty * np.eye(len(gram)))
    beta_z = inverse @ z.T @ (y - y.mean())
    residual = y - y.mean() - z @ beta_z
    dof = max(len(y) - 1 - float(np.trace(z @ inverse @ z.T)), 1.0)
    variance = float(residual @ residual) / dof
    covariance_z = variance * inverse @ gram @ inverse
    coefficients = beta_z / scale
    covariance = covariance_z / np.outer(scale, scale)
    return coefficients, float(y.mean() - mean @ coefficients), covariance, variance


@register_predictor_kind("linear", options=PenaltyOptions)
class LinearPredictor(Predictor):
    """FOX-NAS: ridge regression on stage-level features; explainable coefficient by coefficient."""

    explainable = True

    def __init__(self, space: SearchSpace, num_classes: int, coefficients: np.ndarray, intercept: float,
                 covariance: np.ndarray, feature_means: np.ndarray, meta: dict[str, Any] | None = None):
        super().__init__(space, num_classes, meta)
        self.coefficients, self.intercept = coefficients, intercept
        self.covariance, self.feature_means = covariance, feature_means

    @classmethod
    def fit(cls, space: SearchSpace, batch: ArchBatch, acc1: np.ndarray, options: PenaltyOptions | None = None,
            num_classes: int | None = None, seed: int = 0) -> LinearPredictor:
        options = options or PenaltyOptions()
        x = linear_features(space, batch)
        coefficients, intercept, covariance, _ = fit_ridge(x, np.asarray(acc1, float), options.reg_lambda)
        return cls(space, space.num_classes if num_classes is None else num_classes, coefficients, intercept,
                   covariance, x.mean(axis=0), {"config": asdict(options), "n_train": len(x)})

    def predict(self, batch: ArchBatch) -> np.ndarray:
        return linear_features(self.space, batch) @ self.coefficients + self.intercept

    def standard_errors(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))

    def effect(self, weights: dict[str, float]) -> tuple[float, float]:
        """The predicted change for a change of the features by ``weights`` (feature name
        to amount; features the space holds constant are ignored), and its standard error."""
        names = linear_feature_names(self.space)
        a = np.zeros(len(names))
        for name, amount in weights.items():
            if name in names:
                a[names.index(name)] = amount
        return float(a @ self.coefficients), float(np.sqrt(max(a @ self.covariance @ a, 0.0)))

    def save_model(self, folder: Path) -> dict[str, Any]:
        return {"linear": {"features": linear_feature_names(self.space), "coefficients": self.coefficients.tolist(),
                           "intercept": self.intercept, "covariance": self.covariance.tolist(),
                           "feature_means": self.feature_means.tolist()}}

    @classmethod
    def load_model(cls, folder: Path, space: SearchSpace, num_classes: int, meta: dict[str, Any]) -> LinearPredictor:
        where = folder / "predictor.json"
        saved = meta.get("linear")
        if not isinstance(saved, dict):
            raise PredictorError(f"{where} has no linear model: fit one with anas predict-fit --kind linear")
        names = linear_feature_names(space)
        if saved.get("features") != names:
            raise PredictorError(f"{where}: its linear features do not match space {space.name}")
        p = len(names)
        coefficients = cls.saved_array(saved, "coefficients", (p,), space, where, "linear coefficients of the features")
        covariance = cls.saved_array(saved, "covariance", (p, p), space, where, "linear covariance of the features")
        means = cls.saved_array(saved, "feature_means", (p,), space, where, "means of the linear features")
        intercept = cls.saved_array(saved, "intercept", (), space, where, "the linear intercept")
        return cls(space, num_classes, coefficients, float(intercept), covariance, means, meta)
