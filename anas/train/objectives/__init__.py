"""Training objectives: what a supernet learns from. Importing this package registers the
built-in ones (``supervised``, the sandwich rule on labels; ``contrastive``, Pi-NAS's
label-free cross-path InfoNCE)."""

from anas.train.objectives import contrastive, supervised  # noqa: F401  (register the built-ins)
from anas.train.objectives.objective import (
    OBJECTIVES,
    Objective,
    ObjectiveContext,
    build_objective,
    register_objective,
)

__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "build_objective", "register_objective"]
