"""The default predictor kind: gradient-boosted trees (LightGBM) on the subnet features.

Its folder file is ``predictor.txt``, LightGBM's text model (no pickle).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anas.errors import one_line
from anas.io import atomic_write_text
from anas.options import option
from anas.predict.features import feature_matrix, feature_names
from anas.predict.kinds.predictor_kind import PenaltyOptions, Predictor, PredictorError, register_predictor_kind
from anas.space.arch import ArchBatch
from anas.space.search_space import SearchSpace

MODEL_FILE = "predictor.txt"


@dataclass(frozen=True, kw_only=True)
class LightGBMOptions(PenaltyOptions):
    """LightGBM's settings. None means: chosen from the number of training records, so the
    same defaults work from a few hundred to tens of thousands of records."""

    n_estimators: int = option(1000, "LightGBM boosting rounds.", min=1, max=1_000_000)
    learning_rate: float = option(0.02, "LightGBM learning rate.", above=0, finite=True)
    num_leaves: int | None = option(None, "LightGBM leaves per tree.", default_text="min(31, max(4, n/10))", min=2,
                                    max=131_072)  # LightGBM's own limit
    min_child_samples: int | None = option(None, "LightGBM's least records per leaf.",
                                           default_text="max(2, min(20, n/25))", min=1)
    subsample: float = option(0.8, "LightGBM's share of the records each tree sees.", above=0, max=1)
    colsample_bytree: float = option(0.8, "LightGBM's share of the features each tree sees.", above=0, max=1)


def lightgbm_params(options: LightGBMOptions, n_train: int, seed: int = 0) -> dict[str, Any]:
    return {
        "objective": "regression",
        "learning_rate": options.learning_rate,
        "num_leaves": options.num_leaves or min(31, max(4, n_train // 10)),
        "min_data_in_leaf": options.min_child_samples or max(2, min(20, n_train // 25)),
        "min_data_in_bin": 1,
        "bagging_fraction": options.subsample,
        "bagging_freq": 1,
        "feature_fraction": options.colsample_bytree,
        "lambda_l2": options.reg_lambda,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }


@register_predictor_kind("lightgbm", options=LightGBMOptions)
class LightGBMPredictor(Predictor):
    """Gradient-boosted trees on the settings, MFLOPs and params (the default)."""

    def __init__(self, booster, space: SearchSpace, num_classes: int, meta: dict[str, Any] | None = None):
        super().__init__(space, num_classes, meta)
        self.booster = booster

    @classmethod
    def fit(cls, space: SearchSpace, batch: ArchBatch, acc1: np.ndarray, options: LightGBMOptions | None = None,
            num_classes: int | None = None, seed: int = 0) -> LightGBMPredictor:
        import lightgbm

        options = options or LightGBMOptions()
        num_classes = space.num_classes if num_classes is None else num_classes
        x = feature_matrix(space, batch, num_classes)
        train_set = lightgbm.Dataset(x, label=np.asarray(acc1, float), feature_name=feature_names(space),
                                     free_raw_data=False)
        booster = lightgbm.train(lightgbm_params(options, len(x), seed), train_set,
                                 num_boost_round=options.n_estimators)
        return cls(booster, space, num_classes, {"config": {**asdict(options), "seed": seed}, "n_train": len(x)})

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
