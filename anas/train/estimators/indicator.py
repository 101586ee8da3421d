"""Candidates scored by the BN-NAS indicator (``--estimator bn``): zero cost, no forward pass."""

from __future__ import annotations

import warnings

import numpy as np

from anas.errors import AnasWarning
from anas.nn.bn_indicator import SHARED_BN_WARNING, indicator_scores, indicator_table
from anas.space.arch import Arch, ArchBatch
from anas.train.estimators.estimator import EstimatorContext, register_estimator


@register_estimator("bn")
class BNIndicatorEstimator:
    """The sum over a candidate's blocks of the mean |gamma| of their projection BNs, read
    from the supernet's current parameters (the same on every rank: the parameters are)."""

    def __init__(self, context: EstimatorContext):
        self.supernet = context.supernet
        self.space = context.space
        if not self.supernet.private_bn:
            warnings.warn(SHARED_BN_WARNING, AnasWarning, stacklevel=2)

    def score(self, archs: list[Arch], images=None, labels=None) -> np.ndarray:
        table = indicator_table(self.supernet)
        return indicator_scores(self.space, table, ArchBatch.from_archs(archs))
