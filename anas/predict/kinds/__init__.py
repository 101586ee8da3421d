"""Predictor kinds. Importing this package registers the built-in ones (``lightgbm``, ``linear``, ``bn``)."""

from anas.predict.kinds import bn, lightgbm, linear  # noqa: F401  (register the built-ins)
from anas.predict.kinds.base import PREDICTOR_KINDS, Predictor, PredictorConfig, PredictorError, register_predictor_kind

__all__ = ["PREDICTOR_KINDS", "Predictor", "PredictorConfig", "PredictorError", "register_predictor_kind"]
