"""The accuracy predictor: a LightGBM model of a subnet's top-1 accuracy from its settings.

A predictor folder holds ``predictor.txt`` (LightGBM's text model: no pickle) and
``predictor.json`` (the space as data, the feature order, metrics, number of records,
library versions). It ranks candidates in attentive sampling (``--estimator predictor``)
and in ``anas search``.

Features: every setting column of the table format, plus what the cost model gives for
free: MFLOPs, log-MFLOPs, params and the total depth.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anas import __version__
from anas.space.arch import LIST_SETTINGS, Arch, ArchBatch
from anas.space.cost import batch_costs
from anas.errors import AnasError
from anas.io import atomic_write_text
from anas.space.space import SearchSpace, space_from_dict, space_to_dict
from anas.space.table import setting_columns

PREDICTOR_FORMAT = "anas-predictor-1"
DERIVED_FEATURES = ("mflops", "log_mflops", "params_m", "total_depth")


class PredictorError(AnasError):
    """A predictor folder that is missing, corrupt or of another space."""


@dataclass(frozen=True)
class PredictorConfig:
    """LightGBM settings. ``None`` means: chosen from the number of training records, so the
    same defaults work from a few hundred to tens of thousands of records."""

    n_estimators: int = 1000
    learning_rate: float = 0.02
    num_leaves: int | None = None  # min(31, max(4, n // 10))
    min_child_samples: int | None = None  # max(2, min(20, n // 25))
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    seed: int = 0

    def lightgbm_params(self, n_train: int) -> dict[str, Any]:
        return {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves or min(31, max(4, n_train // 10)),
            "min_data_in_leaf": self.min_child_samples or max(2, min(20, n_train // 25)),
            "min_data_in_bin": 1,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbosity": -1,
        }


def feature_names(space: SearchSpace) -> list[str]:
    return setting_columns(space) + list(DERIVED_FEATURES)


def feature_matrix(space: SearchSpace, batch: ArchBatch, num_classes: int | None = None) -> np.ndarray:
    """One row per subnet, columns in ``feature_names(space)`` order."""
    costs = batch_costs(space, batch, num_classes)
    columns = [batch.resolution[:, None]]
    columns += [getattr(batch, setting).astype(np.float64) for setting in LIST_SETTINGS]
    mflops = costs.mflops
    derived = np.stack([mflops, np.log(mflops), costs.params_m, batch.depth.sum(axis=1)], axis=1)
    return np.concatenate([c.astype(np.float64) for c in columns] + [derived], axis=1)


def rank_metrics(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Kendall tau, Spearman rho (scipy) and mean absolute error."""
    import warnings

    from scipy.stats import kendalltau, spearmanr

    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    with warnings.catch_warnings():  # constant predictions: the correlations are undefined (NaN)
        warnings.simplefilter("ignore")
        tau, rho = kendalltau(measured, predicted).statistic, spearmanr(measured, predicted).statistic
    return {"kendall_tau": float(tau), "spearman_rho": float(rho), "mae": float(np.mean(np.abs(measured - predicted)))}


class Predictor:
    """A fitted LightGBM model of ``acc1`` with the space and feature order it expects."""

    def __init__(self, booster, space: SearchSpace, num_classes: int, meta: dict[str, Any] | None = None):
        self.booster = booster
        self.space = space
        self.num_classes = num_classes
        self.meta = dict(meta or {})

    @classmethod
    def fit(cls, space: SearchSpace, batch: ArchBatch, acc1: np.ndarray, config: PredictorConfig = PredictorConfig(),
            num_classes: int | None = None) -> Predictor:
        import lightgbm

        num_classes = space.num_classes if num_classes is None else num_classes
        x = feature_matrix(space, batch, num_classes)
        train_set = lightgbm.Dataset(x, label=np.asarray(acc1, float), feature_name=feature_names(space),
                                     free_raw_data=False)
        booster = lightgbm.train(config.lightgbm_params(len(x)), train_set, num_boost_round=config.n_estimators)
        return cls(booster, space, num_classes, {"config": asdict(config), "n_train": len(x)})

    def predict(self, batch: ArchBatch) -> np.ndarray:
        return self.booster.predict(feature_matrix(self.space, batch, self.num_classes))

    def predict_archs(self, archs: list[Arch]) -> np.ndarray:
        return self.predict(ArchBatch.from_archs(archs))

    # -- files ---------------------------------------------------------------------------

    def save(self, folder: str | Path, metrics: dict[str, Any] | None = None) -> tuple[Path, Path]:
        import lightgbm
        import scipy

        folder = Path(folder)
        model_path = atomic_write_text(folder / "predictor.txt", self.booster.model_to_string())
        sidecar = {
            "format": PREDICTOR_FORMAT,
            "space": space_to_dict(self.space),
            "space_name": self.space.name,
            "num_classes": self.num_classes,
            "target": "acc1",
            "features": feature_names(self.space),
            **self.meta,
            "metrics": {k: (None if v != v else v) for k, v in (metrics or {}).items()},  # JSON has no NaN
            "versions": {"anas": __version__, "lightgbm": lightgbm.__version__, "numpy": np.__version__,
                         "scipy": scipy.__version__},
        }
        sidecar_path = atomic_write_text(folder / "predictor.json", json.dumps(sidecar, indent=2) + "\n")
        return model_path, sidecar_path

    @classmethod
    def load(cls, folder: str | Path) -> Predictor:
        import lightgbm

        folder = Path(folder)
        model_path, sidecar_path = folder / "predictor.txt", folder / "predictor.json"
        if not folder.is_dir():
            raise PredictorError(f"predictor folder {folder} does not exist")
        for path in (model_path, sidecar_path):
            if not path.is_file():
                raise PredictorError(f"predictor folder {folder} has no {path.name}: fit one with anas predict-fit")
        try:
            meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PredictorError(f"{sidecar_path} is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != PREDICTOR_FORMAT:
            raise PredictorError(f"{sidecar_path} is not an anas predictor description")
        space = space_from_dict(meta.get("space"), f"{sidecar_path} (space)")
        if meta.get("features") != feature_names(space):
            raise PredictorError(f"{sidecar_path}: its feature order does not match space {space.name}")
        try:
            booster = lightgbm.Booster(model_str=model_path.read_text(encoding="utf-8"))
        except (lightgbm.basic.LightGBMError, UnicodeDecodeError, ValueError) as exc:
            raise PredictorError(f"{model_path} is not a LightGBM text model: {' '.join(str(exc).split())[:150]}") from None
        if booster.num_feature() != len(meta["features"]):
            raise PredictorError(f"{model_path} expects {booster.num_feature()} features, "
                                 f"its sidecar names {len(meta['features'])}")
        return cls(booster, space, int(meta.get("num_classes") or space.num_classes), meta)

    def check_space(self, space: SearchSpace, where: str) -> None:
        """Refuse to rank subnets of another space."""
        if space != self.space:
            raise PredictorError(f"the predictor was fitted on space {self.space.name}, but {where} is of space "
                                 f"{space.name}")


class PredictorEstimator:
    """Attentive-sampling estimator: predicted accuracy of all candidates in one call."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    def score(self, archs: list[Arch], images=None, labels=None) -> np.ndarray:
        return self.predictor.predict_archs(archs)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/test split; both parts need records."""
    n_test = int(math.floor(n * test_fraction))
    if not 0 < test_fraction < 1:
        raise AnasError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    if n_test < 2 or n - n_test < 5:
        raise AnasError(f"{n} records are too few to hold {test_fraction:.0%} out: need at least 5 to fit "
                        f"and 2 to test (evaluate more subnets or pass --test-records)")
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]
