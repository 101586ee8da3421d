"""The default predictor kind: gradient-boosted trees (LightGBM) on the subnet features.

Its folder file is ``predictor.txt``, LightGBM's text model (no pickle).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from anas.errors import one_line
from anas.io import atomic_write_text
from anas.predict.features import feature_matrix, feature_names
from anas.predict.kinds.base import Predictor, PredictorConfig, PredictorError, register_predictor_kind
from anas.space.arch import ArchBatch
from anas.space.space import SearchSpace

MODEL_FILE = "predictor.txt"


def lightgbm_params(config: PredictorConfig, n_train: int) -> dict[str, Any]:
    return {
        "objective": "regression",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves or min(31, max(4, n_train // 10)),
        "min_data_in_leaf": config.min_child_samples or max(2, min(20, n_train // 25)),
        "min_data_in_bin": 1,
        "bagging_fraction": config.subsample,
        "bagging_freq": 1,
        "feature_fraction": config.colsample_bytree,
        "lambda_l2": config.reg_lambda,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }


@register_predictor_kind("lightgbm")
class LightGBMPredictor(Predictor):
    """Gradient-boosted trees on the settings, MFLOPs and params (the default)."""

    def __init__(self, booster, space: SearchSpace, num_classes: int, meta: dict[str, Any] | None = None):
        super().__init__(space, num_classes, meta)
        self.booster = booster

    @classmethod
    def fit(cls, space: SearchSpace, batch: ArchBatch, acc1: np.ndarray, config: PredictorConfig = PredictorConfig(),
            num_classes: int | None = None) -> LightGBMPredictor:
        import lightgbm

        num_classes = space.num_classes if num_classes is None else num_classes
        x = feature_matrix(space, batch, num_classes)
        train_set = lightgbm.Dataset(x, label=np.asarray(acc1, float), feature_name=feature_names(space),
                                     free_raw_data=False)
        booster = lightgbm.train(lightgbm_params(config, len(x)), train_set, num_boost_round=config.n_estimators)
        return cls(booster, space, num_classes, {"config": asdict(config), "n_train": len(x)})

    def predict(self, batch: ArchBatch) -> np.ndarray:
        return self.booster.predict(feature_matrix(self.space, batch, self.num_classes))

    def save_model(self, folder: Path) -> dict[str, Any]:
        import lightgbm

        atomic_write_text(folder / MODEL_FILE, self.booster.model_to_string())
        return {"model_file": MODEL_FILE, "features": feature_names(self.space),
                "versions": {"lightgbm": lightgbm.__version__}}

    @classmethod
    def load_model(cls, folder: Path, space: SearchSpace, num_classes: int, meta: dict[str, Any]) -> LightGBMPredictor:
        import lightgbm

        model_path = folder / MODEL_FILE
        if not model_path.is_file():
            raise PredictorError(f"predictor folder {folder} has no {MODEL_FILE}: fit one with anas predict-fit")
        if meta.get("features") != feature_names(space):
            raise PredictorError(f"{folder / 'predictor.json'}: its feature order does not match space {space.name}")
        try:
            booster = lightgbm.Booster(model_str=model_path.read_text(encoding="utf-8"))
        except (lightgbm.basic.LightGBMError, UnicodeDecodeError, ValueError) as exc:
            raise PredictorError(f"{model_path} is not a LightGBM text model: {one_line(exc, 150)}") from None
        if booster.num_feature() != len(meta["features"]):
            raise PredictorError(f"{model_path} expects {booster.num_feature()} features, "
                                 f"its sidecar names {len(meta['features'])}")
        return cls(booster, space, num_classes, meta)
