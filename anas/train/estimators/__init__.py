"""Estimators: how attentive sampling scores its candidates. Importing this package
registers the built-in ones (``loss``, ``predictor``, ``bn``)."""

from anas.train.estimators import indicator, loss, predictor  # noqa: F401  (register the built-ins)
from anas.train.estimators.estimator import ESTIMATORS, Estimator, EstimatorContext, build_estimator, register_estimator

__all__ = ["ESTIMATORS", "Estimator", "EstimatorContext", "build_estimator", "register_estimator"]
