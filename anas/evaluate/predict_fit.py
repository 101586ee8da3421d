"""What ``anas predict-fit`` does: evaluate subnets of a trained run into its records, then
fit and assess a LightGBM accuracy predictor."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from anas.space.arch import Arch
from anas.errors import AnasError
from anas.io import atomic_write
from anas.predict.predictor import Predictor, PredictorConfig, rank_metrics, split_indices
from anas.evaluate.records import evaluate_into_records, known_settings, read_records, settings_key, spread_sample
from anas.space.space import SearchSpace
from anas.space.table import frame_to_archs


@dataclass
class FitReport:
    space: str
    metrics: dict[str, float]
    n_train: int
    n_test: int
    n_records: int
    paths: dict[str, str] = field(default_factory=dict)
    evaluated_now: int = 0

    def to_dict(self) -> dict[str, Any]:
        metrics = {k: (None if math.isnan(v) else v) for k, v in self.metrics.items()}  # JSON has no NaN
        return {**metrics, "n_train": self.n_train, "n_test": self.n_test, "n_records": self.n_records,
                "evaluated_now": self.evaluated_now, "space": self.space, "paths": self.paths}


# ----------------------------------------------------------------------------------------
# Records of a run
# ----------------------------------------------------------------------------------------


def collect_records(run, samples: int, calib_batches: int | None, split: str, seed: int,
                    progress: Callable[[int, int], Callable[[int], None]] | None = None
                    ) -> tuple[Path, pd.DataFrame | None, int]:
    """Evaluate ``samples`` subnets spread over the MFLOPs range into ``RUN/records.csv``;
    subnets already there are skipped. Under torchrun, ranks evaluate disjoint subnets and
    rank 0 writes. Returns the path, the whole table and how many were evaluated now."""
    from anas.train import distributed

    if samples < 2:
        raise AnasError("--samples must be at least 2 (the smallest and the largest subnet)")
    split = _resolve_split(run, split)
    ctx = distributed.init_distributed(run.device.type)
    try:
        path = run.run_dir.path / "records.csv"
        existing = read_records(path, run.space, run.num_classes) if path.exists() else None
        done = known_settings(existing, run.space) if existing is not None else set()
        todo = [a for a in spread_sample(run.space, samples, seed, run.num_classes) if settings_key(a) not in done]

        def evaluate_chunk(chunk: list[Arch]) -> list[dict]:
            mine = chunk[ctx.rank] if ctx.rank < len(chunk) else None
            result = run.evaluate(mine, calib_batches, split).to_dict() if mine is not None else None
            return [r for r in distributed.gather_objects(result, ctx) if r is not None]

        tick = progress(len(todo), ctx.rank) if progress is not None else None
        table = evaluate_into_records(path, run.space, todo, evaluate_chunk, existing, chunk_size=ctx.world_size,
                                      num_classes=run.num_classes, write=ctx.is_main, on_done=tick)
        if not ctx.is_main:
            table = None  # rank 0 holds and writes the records
    finally:
        distributed.shutdown(ctx)
    return path, table, len(todo)


def _resolve_split(run, split: str) -> str:
    if split == "auto":
        return "holdout" if run.config.holdout > 0 else "val"
    if split not in ("holdout", "val"):
        raise AnasError(f"unknown --split {split!r}: use auto, holdout or val")
    return split


# ----------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------


def fit_and_report(space: SearchSpace, records: pd.DataFrame, out: str | Path, *, num_classes: int | None = None,
                   test_records: pd.DataFrame | None = None, test_fraction: float = 0.2, seed: int = 0,
                   config: PredictorConfig = PredictorConfig(), plot: bool = True) -> FitReport:
    """Fit on ``records`` (all of them when ``test_records`` is given, else a seeded
    ``1 - test_fraction`` share), measure on the held-out records, write the predictor
    folder and the scatter plot."""
    batch = frame_to_archs(space, records)
    acc1 = records["acc1"].to_numpy(dtype=float)
    if test_records is not None:
        if len(records) < 5:
            raise AnasError(f"{len(records)} records are too few to fit a predictor: need at least 5")
        train_batch, train_acc = batch, acc1
        test_batch, test_acc = frame_to_archs(space, test_records), test_records["acc1"].to_numpy(dtype=float)
    else:
        train_idx, test_idx = split_indices(len(records), test_fraction, seed)
        train_batch, train_acc = batch.take(train_idx), acc1[train_idx]
        test_batch, test_acc = batch.take(test_idx), acc1[test_idx]
    predictor = Predictor.fit(space, train_batch, train_acc, config, num_classes)
    predicted = predictor.predict(test_batch)
    metrics = rank_metrics(test_acc, predicted)
    n_records = len(train_acc) + len(test_acc)  # every record used, fitted or held out
    report = FitReport(space.name, metrics, len(train_acc), len(test_acc), n_records)
    predictor.meta.update(n_records=n_records, n_test=len(test_acc))
    model_path, sidecar_path = predictor.save(out, metrics)
    report.paths = {"predictor": str(model_path), "sidecar": str(sidecar_path)}
    if plot:
        report.paths["plot"] = str(scatter_plot(test_acc, predicted, Path(out) / "predictor.png", space.name, metrics))
    return report


def scatter_plot(measured: np.ndarray, predicted: np.ndarray, path: Path, space_name: str,
                 metrics: dict[str, float]) -> Path:
    """Predicted vs measured top-1 on the held-out records."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.scatter(measured, predicted, s=12, alpha=0.7)
    low, high = float(min(measured.min(), predicted.min())), float(max(measured.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
    ax.set_xlabel("measured top-1 (%)")
    ax.set_ylabel("predicted top-1 (%)")
    ax.set_title(f"{space_name}: Kendall tau {metrics['kendall_tau']:.3f}, MAE {metrics['mae']:.2f}")
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)

