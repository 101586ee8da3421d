"""What predictors see of a subnet: every setting column of the table format, plus what
the cost model gives for free (MFLOPs, log-MFLOPs, params, total depth)."""

from __future__ import annotations

import numpy as np

from anas.space.arch import ArchBatch
from anas.space.cost import batch_costs
from anas.space.search_space import SearchSpace
from anas.space.table_format import setting_columns

DERIVED_FEATURES = ("mflops", "log_mflops", "params_m", "total_depth")


def feature_names(space: SearchSpace) -> list[str]:
    return setting_columns(space) + list(DERIVED_FEATURES)


def feature_matrix(space: SearchSpace, batch: ArchBatch, num_classes: int | None = None) -> np.ndarray:
    """One row per subnet, columns in ``feature_names(space)`` order."""
    costs = batch_costs(space, batch, num_classes)
    derived = np.stack([costs.mflops, np.log(costs.mflops), costs.params_m, batch.depth.sum(axis=1)], axis=1)
    return np.concatenate([batch.matrix(), derived], axis=1)
