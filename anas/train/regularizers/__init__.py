"""Regularizers and teachers: loss terms and hooks around a sandwich step. Importing this
package registers the built-in ones (``kd``, in-place distillation; the teachers ``none``
and ``ema``, Pi-NAS's mean teacher)."""

from anas.train.regularizers import kd, teacher  # noqa: F401  (register the built-ins)
from anas.train.regularizers.regularizer import (
    REGULARIZERS,
    TEACHERS,
    Regularizer,
    RegularizerContext,
    StepState,
    build_regularizers,
    check_regularizers,
    register_regularizer,
    register_teacher,
)

__all__ = ["REGULARIZERS", "TEACHERS", "Regularizer", "RegularizerContext", "StepState", "build_regularizers",
           "check_regularizers", "register_regularizer", "register_teacher"]
