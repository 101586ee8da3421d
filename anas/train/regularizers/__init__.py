"""Regularizers: loss terms and hooks around a sandwich step. Importing this package
registers the built-in ones (``kd``, in-place distillation; ``mean-teacher``, Pi-NAS's EMA
teacher, which ``--teacher ema`` adds)."""

from anas.train.regularizers import kd, teacher  # noqa: F401  (register the built-ins)
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
