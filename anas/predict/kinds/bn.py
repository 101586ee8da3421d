"""The BN-NAS predictor kind (``--kind bn``): the BatchNorm indicator of a trained
supernet, a zero-cost ranking of subnets (:mod:`anas.nn.bn_indicator`).

It is read from a run's checkpoint, not fitted on records. Its folder holds no model file:
``predictor.json`` carries the indicator table (per block, operation and width, a few
hundred numbers) as JSON.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anas.errors import AnasWarning
from anas.nn.bn_indicator import (
    REDUCTIONS,
    SHARED_BN_WARNING,
    IndicatorTable,
    indicator_scores,
    indicator_table,
    table_shape,
)
from anas.nn.supernet import Supernet
from anas.options import option
from anas.predict.kinds.predictor_kind import Predictor, PredictorError, register_predictor_kind
from anas.space.arch import ArchBatch
from anas.space.search_space import SearchSpace


@dataclass(frozen=True, kw_only=True)
class BNOptions:
    bn_reduce: str = option("sum", "The indicator of a subnet: the sum or the mean of its blocks' indicators.",
                            choices=REDUCTIONS)


@register_predictor_kind("bn", options=BNOptions)
class BNIndicatorPredictor(Predictor):
    """BN-NAS: a subnet's score is the sum (or mean) over its blocks of the mean |gamma| of
    their projection BNs."""

    zero_cost = True
    score_label = "BN indicator"

    def __init__(self, table: IndicatorTable, reduce: str, space: SearchSpace, num_classes: int,
                 meta: dict[str, Any] | None = None):
        super().__init__(space, num_classes, meta)
        self.table = table
        self.reduce = reduce

    @classmethod
    def from_supernet(cls, supernet: Supernet, options: BNOptions | None = None,
                      num_classes: int | None = None) -> BNIndicatorPredictor:
        if not supernet.private_bn:
            warnings.warn(SHARED_BN_WARNING, AnasWarning, stacklevel=2)
        reduce = (options or BNOptions()).bn_reduce
        return cls(indicator_table(supernet), reduce, supernet.space, num_classes or supernet.num_classes)

    @classmethod
    def fit(cls, space, batch, acc1, options=None, num_classes=None, seed=0) -> Predictor:
        raise PredictorError("the bn predictor is read from a trained supernet, not fitted on records: "
                             "use anas predict-fit --kind bn --run RUN_DIR")

    def predict(self, batch: ArchBatch) -> np.ndarray:
        return indicator_scores(self.space, self.table, batch, self.reduce)

    def save_model(self, folder: Path) -> dict[str, Any]:
        return {"bn_indicator": {"reduce": self.reduce, "private_bn": self.table.private_bn,
                                 "values": self.table.values.tolist()}}

    @classmethod
    def load_model(cls, folder: Path, space: SearchSpace, num_classes: int, meta: dict[str, Any]) -> BNIndicatorPredictor:
        where = folder / "predictor.json"
        saved = meta.get("bn_indicator")
        if not isinstance(saved, dict):
            raise PredictorError(f"{where} has no bn_indicator table: write it with anas predict-fit --kind bn")
        reduce, private_bn = saved.get("reduce"), saved.get("private_bn")
        if reduce not in REDUCTIONS or not isinstance(private_bn, bool):
            raise PredictorError(f"{where}: bn_indicator needs reduce (sum or mean) and private_bn (true or false)")
        values = cls.saved_array(saved, "values", table_shape(space), space, where, "bn_indicator values")
        if np.any(values < 0):
            raise PredictorError(f"{where}: bn_indicator values must be >= 0 (means of |gamma|)")
        return cls(IndicatorTable(values, private_bn), reduce, space, num_classes, meta)
