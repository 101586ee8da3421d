"""Regularizers: loss terms and hooks around a sandwich step. Importing this package
registers the built-in one (``kd``, in-place distillation)."""

from anas.train.regularizers import kd  # noqa: F401  (register the built-ins)
from anas.train.regularizers.base import (
    REGULARIZERS,
    Regularizer,
    RegularizerContext,
    StepState,
    build_regularizers,
    check_regularizers,
    register_regularizer,
)

__all__ = ["REGULARIZERS", "Regularizer", "RegularizerContext", "StepState", "build_regularizers",
           "check_regularizers", "register_regularizer"]
