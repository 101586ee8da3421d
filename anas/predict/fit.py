"""Fitting a predictor from records and measuring it on held-out ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anas.errors import AnasError
from anas.io import json_safe
from anas.plots import new_figure, save_png
from anas.predict.explain import write_explanation
from anas.predict.folder import save_predictor
from anas.predict.kinds import PREDICTOR_KINDS, Predictor
from anas.predict.kinds.predictor_kind import ACCURACY_LABEL
from anas.predict.metrics import rank_metrics, split_indices
from anas.predict.records import merge_duplicates
from anas.space.cost import batch_costs
from anas.space.search_space import SearchSpace
from anas.space.table_format import frame_to_archs


@dataclass
class FitReport:
    space: str
    kind: str
    metrics: dict[str, float]
    n_train: int
    n_test: int
    n_records: int
    paths: dict[str, str] = field(default_factory=dict)
    evaluated_now: int = 0
    duplicates_merged: int = 0  # rows of a subnet listed more than once, averaged into its first
    target: str = "acc1"  # the records column predicted

    def to_dict(self) -> dict[str, Any]:
        return json_safe({**self.metrics, "kind": self.kind, "target": self.target, "n_train": self.n_train,
                          "n_test": self.n_test, "n_records": self.n_records, "evaluated_now": self.evaluated_now,
                          "duplicates_merged": self.duplicates_merged, "space": self.space,
                          "paths": self.paths})


def fit_and_report(space: SearchSpace, records: pd.DataFrame, out: str | Path, *, kind: str = "lightgbm",
                   num_classes: int | None = None, test_records: pd.DataFrame | None = None,
                   test_fraction: float = 0.2, options: Any = None, seed: int = 0,
                   plot: bool = True, target: str = "acc1", explain: bool = False) -> FitReport:
    """Fit a predictor of ``kind`` (with the kind's ``options``; None: its defaults) of the
    ``target`` column on ``records`` (all of them when ``test_records`` is given, else a
    ``1 - test_fraction`` share drawn with ``seed``, which the fit also takes), measure it
    on the held-out records, write the predictor folder ``out``, its scatter plot and,
    with ``explain``, what the predictor says about the space (``anas.predict.explain``)."""
    predictor_kind = PREDICTOR_KINDS.get(kind)
    for frame, which in ((records, "the records"), (test_records, "the test records")):
        if frame is not None and target not in frame.columns:
            raise AnasError(f"{which} have no column {target!r} to predict (columns: {', '.join(map(str, frame.columns))})")
    records, merged = merge_duplicates(space, records, target)  # a subnet is either fitted or held out, never both
    batch = frame_to_archs(space, records)
    measured = records[target].to_numpy(dtype=float)
    if test_records is not None:
        if len(records) < 5:
            raise AnasError(f"{len(records)} records are too few to fit a predictor: need at least 5")
        train_batch, train_acc = batch, measured
        test_batch, test_acc = frame_to_archs(space, test_records), test_records[target].to_numpy(dtype=float)
    else:
        train_idx, test_idx = split_indices(len(records), test_fraction, seed)
        train_batch, train_acc = batch.take(train_idx), measured[train_idx]
        test_batch, test_acc = batch.take(test_idx), measured[test_idx]
    predictor = predictor_kind.fit(space, train_batch, train_acc, options, num_classes, seed)
    predicted = predictor.predict(test_batch)
    metrics = rank_metrics(test_acc, predicted)
    n_records = len(train_acc) + len(test_acc)  # every record used, fitted or held out
    report = FitReport(space.name, PREDICTOR_KINDS.name_of(predictor_kind), metrics, len(train_acc), len(test_acc),
                       n_records, duplicates_merged=merged, target=target)
    predictor.meta.update(n_records=n_records, n_test=len(test_acc), target=target)
    report.paths = save_predictor(predictor, out, metrics)  # written as strict JSON (NaN as null)
    if plot:
        report.paths["plot"] = str(scatter_plot(test_acc, predicted, Path(out) / "predictor.png", space.name, metrics,
                                                predictor.score_label,
                                                measured_label=None if target == "acc1" else f"measured {target}"))
    if explain:
        report.paths.update(write_explanation(predictor, out))
    return report


def zero_cost_report(predictor: Predictor, records: pd.DataFrame | None, out: str | Path,
                     plot: bool = True) -> FitReport:
    """Write a zero-cost predictor's folder (one read from a supernet, not fitted) and,
    when there are ``records``, measure how it ranks them next to how MFLOPs and params
    alone rank them."""
    space = predictor.space
    metrics: dict[str, float] = {}
    n = 0
    if records is not None:
        records, _ = merge_duplicates(space, records)
        batch, acc1 = frame_to_archs(space, records), records["acc1"].to_numpy(dtype=float)
        predicted = predictor.predict(batch)
        costs = batch_costs(space, batch, predictor.num_classes)
        metrics = {**correlations(acc1, predicted), **correlations(acc1, costs.mflops, "_mflops"),
                   **correlations(acc1, costs.params, "_params")}
        n = len(acc1)
    report = FitReport(space.name, PREDICTOR_KINDS.name_of(type(predictor)), metrics, 0, n, n)
    predictor.meta.update(n_records=n, n_test=n)
    report.paths = save_predictor(predictor, out, metrics)
    if plot and records is not None:
        report.paths["plot"] = str(scatter_plot(acc1, predicted, Path(out) / "predictor.png", space.name, metrics,
                                                predictor.score_label))
    return report


def correlations(measured: np.ndarray, score: np.ndarray, suffix: str = "") -> dict[str, float]:
    """Kendall tau and Spearman rho of ``score`` against ``measured``, the keys ending in ``suffix``."""
    metrics = rank_metrics(measured, score)
    return {f"kendall_tau{suffix}": metrics["kendall_tau"], f"spearman_rho{suffix}": metrics["spearman_rho"]}


def scatter_plot(measured: np.ndarray, predicted: np.ndarray, path: Path, space_name: str,
                 metrics: dict[str, float], score_label: str = ACCURACY_LABEL,
                 measured_label: str | None = None) -> Path:
    """Predicted vs measured values on the held-out records (with the diagonal when the
    predictions are of the measured quantity)."""
    figure, ax = new_figure(5, 5)
    ax.scatter(measured, predicted, s=12, alpha=0.7)
    accuracies = score_label == ACCURACY_LABEL or measured_label is not None
    if accuracies:
        low, high = float(min(measured.min(), predicted.min())), float(max(measured.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
    ax.set_xlabel(measured_label or "measured top-1 (%)")
    ax.set_ylabel(score_label)
    error = f", MAE {metrics['mae']:.2f}" if accuracies else ""
    ax.set_title(f"{space_name}: Kendall tau {metrics['kendall_tau']:.3f}{error}")
    return save_png(figure, path)
