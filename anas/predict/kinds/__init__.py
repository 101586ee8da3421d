"""Predictor kinds. Importing this package registers the built-in one (``lightgbm``)."""

from anas.predict.kinds import lightgbm  # noqa: F401  (register the built-ins)
from anas.predict.kinds.base import PREDICTOR_KINDS, Predictor, PredictorConfig, PredictorError, register_predictor_kind

__all__ = ["PREDICTOR_KINDS", "Predictor", "PredictorConfig", "PredictorError", "register_predictor_kind"]
