"""Predictor kinds. Importing this package registers the built-in ones (``lightgbm``, ``linear``, ``bn``)."""

from anas.predict.kinds import bn, lightgbm, linear  # noqa: F401  (register the built-ins)
from anas.predict.kinds.predictor_kind import (
    PREDICTOR_KINDS,
    PenaltyOptions,
    Predictor,
    PredictorError,
    register_predictor_kind,
)

__all__ = ["PREDICTOR_KINDS", "PenaltyOptions", "Predictor", "PredictorError", "register_predictor_kind"]
