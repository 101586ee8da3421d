"""What a search leaves behind: the Pareto front of what was scored, the best subnet,
measured accuracy of the best ones (``--verify``), and the files ``pareto.csv``,
``pareto.png`` and ``best.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anas.evaluate.trained import TrainedRun
from anas.io import atomic_write_json
from anas.plots import new_figure, save_png
from anas.predict.kinds.predictor_kind import ACCURACY_LABEL
from anas.progress import progress_bars
from anas.search.problem import Band, Evaluated, Genome
from anas.space.arch import Arch
from anas.space.search_space import SearchSpace
from anas.space.table_format import archs_to_frame, write_table


def pareto_mask(objectives: np.ndarray) -> np.ndarray:
    """Rows not dominated by any other row (all objectives minimized)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    mask = np.zeros(len(objectives), dtype=bool)
    if len(objectives):
        mask[NonDominatedSorting().do(objectives, only_non_dominated_front=True)] = True
    return mask


@dataclass
class SearchResult:
    """Everything a strategy scored, and the feasible Pareto front of it."""

    space: SearchSpace
    strategy: str
    genome: Genome
    archive: Evaluated
    front: np.ndarray  # indices into the archive, best predicted first
    best: int  # index into the archive
    calls: int
    seconds: float
    score_label: str = ACCURACY_LABEL  # what the predictor's scores are (pred_acc1)
    distribution: dict | None = None  # what a strategy that learns one (fpnas) learned, as JSON

    def arch(self, index: int) -> Arch:
        return self.genome.decode(self.archive.genes[index:index + 1])[0]


def front_frame(result: SearchResult, measured: dict[int, float] | None = None,
                measured_latency: dict[int, float] | None = None) -> pd.DataFrame:
    """The Pareto front in the table format, plus ``pred_acc1`` (``latency_ms``, ``acc1``,
    ``measured_latency_ms``)."""
    archive, front = result.archive, result.front
    batch = result.genome.decode(archive.genes[front])
    frame = archs_to_frame(result.space, batch)
    frame["mflops"], frame["params_m"] = archive.mflops[front], archive.params_m[front]
    frame["pred_acc1"] = archive.pred_acc1[front]
    if not np.all(np.isnan(archive.latency_ms[front])):
        frame["latency_ms"] = archive.latency_ms[front]
    if measured:
        frame["acc1"] = [measured.get(int(i), np.nan) for i in front]
    if measured_latency:
        frame["measured_latency_ms"] = [measured_latency.get(int(i), np.nan) for i in front]
    return frame


def choose_best(result: SearchResult, measured: dict[int, float] | None = None) -> int:
    """The best predicted subnet, or the best measured one when some were verified."""
    if measured:
        return max(measured, key=measured.get)
    return result.best


def best_record(result: SearchResult, index: int, measured: dict[int, float] | None = None,
                measured_latency: dict[int, float] | None = None) -> dict:
    """``best.json``: an arch file that ``--arch`` accepts as it is, with its numbers."""
    record = result.arch(index).to_dict()
    record.update(space=result.space.name, mflops=float(result.archive.mflops[index]),
                  params_m=float(result.archive.params_m[index]), pred_acc1=float(result.archive.pred_acc1[index]))
    if not np.isnan(result.archive.latency_ms[index]):
        record["latency_ms"] = float(result.archive.latency_ms[index])
    if measured and index in measured:
        record["acc1"] = float(measured[index])
    if measured_latency and index in measured_latency:
        record["measured_latency_ms"] = float(measured_latency[index])
    return record


def plot_search(result: SearchResult, band: Band, path: str | Path, best: int) -> Path:
    """Predicted accuracy vs MFLOPs of everything evaluated, the front highlighted."""
    archive = result.archive
    figure, ax = new_figure(7, 4.5)
    ax.axvspan(band.lo, band.hi, color="tab:green", alpha=0.08, label=f"band {band} MFLOPs")
    ax.scatter(archive.mflops, archive.pred_acc1, s=4, color="grey", alpha=0.35, label=f"evaluated ({len(archive.mflops)})")
    order = result.front[np.argsort(archive.mflops[result.front])]
    ax.plot(archive.mflops[order], archive.pred_acc1[order], "o-", color="tab:blue", markersize=4,
            label=f"Pareto front ({len(order)})")
    ax.scatter([archive.mflops[best]], [archive.pred_acc1[best]], marker="*", s=180, color="tab:red", zorder=5,
               label="best")
    ax.set_xlabel("MFLOPs")
    ax.set_ylabel(result.score_label)
    ax.set_title(f"{result.space.name}: {result.strategy}, {result.calls} predictor calls")
    ax.legend(loc="lower right", fontsize=8)
    return save_png(figure, path)


def verify_front(result: SearchResult, run: TrainedRun, k: int, calib_batches: int | None = None,
                 progress: bool = False) -> dict[int, float]:
    """Measured top-1 (BN recalibrated) of the ``k`` best predicted front members, by
    their index in the archive."""
    chosen = result.front[:k]
    measured = {}
    with progress_bars(progress) as bars:
        bar = bars.add("verifying", len(chosen))
        for index in chosen:
            measured[int(index)] = run.evaluate(result.arch(int(index)), calib_batches).acc1
            bar.advance()
    return measured


def write_outputs(result: SearchResult, band: Band, folder: str | Path, measured: dict[int, float],
                  best: int, measured_latency: dict[int, float] | None = None) -> dict[str, str]:
    """``pareto.csv``, ``pareto.png`` and ``best.json`` in ``folder`` (and
    ``distribution.json`` when the strategy learned one); returns their paths."""
    folder = Path(folder)
    paths = {
        "pareto_csv": str(write_table(front_frame(result, measured, measured_latency), folder / "pareto.csv")),
        "pareto_png": str(plot_search(result, band, folder / "pareto.png", best)),
        "best_json": str(atomic_write_json(folder / "best.json", best_record(result, best, measured, measured_latency))),
    }
    if result.distribution is not None:
        paths["distribution_json"] = str(atomic_write_json(folder / "distribution.json", result.distribution))
    return paths
