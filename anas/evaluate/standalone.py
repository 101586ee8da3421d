"""What ``anas standalone`` does: how well a supernet ranks subnets by their true accuracy.

K subnets spread over the run's MFLOPs range (or the subnets of a file) are each trained
from scratch as a static network with the run's data and recipe
(:mod:`anas.train.static_training`), and evaluated on the validation split; the same subnets
are evaluated with the supernet's weights (BN recalibrated) and, when the run folder has
one, by its predictor. Output folder (default ``RUN_DIR/standalone/``)::

    standalone.csv   the table format + acc1_standalone, acc1_supernet, acc1_predicted,
                     epochs, seed; one row per subnet, rewritten as each one finishes
    ranking.json     Kendall tau, Spearman rho and mean absolute difference of the
                     supernet and of the predictor against the stand-alone accuracies
    ranking.png      stand-alone against supernet accuracy, labelled with MFLOPs
    subnets/ID/      each subnet's training (a run folder: checkpoint, metrics, log)

A rerun skips the subnets already in ``standalone.csv`` and continues a subnet whose
training was interrupted from its last checkpoint. Under ``torchrun`` each rank trains
whole subnets (``world_size`` at a time) and rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anas.checks import SPREAD_SAMPLE_BYTES, check_at_least, check_memory
from anas.errors import AnasError, TableError
from anas.evaluate.trained import TrainedRun, TrainedRunOptions, load_trained_run
from anas.io import atomic_write_json, json_safe
from anas.options import option, updated
from anas.plots import new_figure, save_png
from anas.predict.folder import has_predictor, load_predictor
from anas.predict.kinds import Predictor
from anas.predict.metrics import rank_metrics
from anas.progress import progress_bars
from anas.runtime.device import DeviceOption, resolve_device
from anas.runtime.distributed import gather_objects, init_distributed, process_group
from anas.runtime.rundir import latest_checkpointed_run
from anas.space.arch import Arch, ArchBatch, arch_from_dict
from anas.space.cost import batch_costs
from anas.space.sampling import spread_sample
from anas.space.table_format import archs_to_frame, frame_to_archs, read_archs, read_table, subnet_keys, write_table
from anas.train.static_training import SubnetTrainingOptions, train_standalone

TABLE_FILE = "standalone.csv"
RANKING_FILE = "ranking.json"
PLOT_FILE = "ranking.png"
MIN_SUBNETS = 3  # a rank correlation needs three subnets to say anything
DEFAULT_SUBNETS = 8


def _check_subnets(subnets: int, flag: str) -> None:
    check_at_least(subnets, MIN_SUBNETS, flag, " (a rank correlation needs three subnets)")
    check_memory(subnets * SPREAD_SAMPLE_BYTES, flag, subnets)


@dataclass(frozen=True, kw_only=True)
class StandaloneOptions(TrainedRunOptions, SubnetTrainingOptions, DeviceOption):
    """Every option of ``anas standalone``."""

    subnets: int | None = option(None, "Subnets spread evenly over the run's MFLOPs range, smallest and largest "
                                       "included.", default_text=str(DEFAULT_SUBNETS), check=_check_subnets)
    archs: str | None = option(None, "Or the subnets of this file: a table-format CSV or a JSON list.")
    out: str | None = option(None, "Output folder.", default_text="RUN_DIR/standalone")
    plot: bool = option(True, "Draw ranking.png.")


@dataclass
class StandaloneOutcome:
    ranking: dict[str, Any] | None  # None on ranks other than 0 of a torchrun job
    run: str
    run_was_chosen: bool  # True when the latest run under ./runs was taken
    trained_now: int = 0
    paths: dict[str, str] = field(default_factory=dict)


def standalone(options: StandaloneOptions, progress: bool = False) -> StandaloneOutcome:
    """Train the subnets on their own, compare, write the output folder; ``progress``
    shows a bar on standard error."""
    _check_options(options)
    chosen = options.run is None
    run_path = str(latest_checkpointed_run()) if chosen else options.run
    run = load_trained_run(run_path, resolve_device(options.device), options.data_dir)
    archs = _subnets(run, options)
    out = Path(options.out) if options.out else run.run_dir.path / "standalone"
    epochs = options.epochs or run.config.epochs
    existing = _read_existing(out / TABLE_FILE, epochs, options.seed)
    done = set() if existing is None else set(frame_to_archs(run.space, existing, str(out / TABLE_FILE)))
    predictor = _run_predictor(run)
    todo = [arch for arch in archs if arch not in done]
    with process_group(init_distributed(run.device.type)) as ctx:
        config = updated(run.config, epochs=epochs, seed=options.seed, device=str(ctx.device_for(run.device)))
        table = existing
        with progress_bars(progress and ctx.is_main) as bars:
            bar = bars.add("stand-alone subnets", len(todo) * epochs)
            for start in range(0, len(todo), ctx.world_size):
                chunk = todo[start:start + ctx.world_size]
                mine = chunk[ctx.rank] if ctx.rank < len(chunk) else None
                row = _measure(run, config, mine, out, lambda epoch, row: bar.advance()) if mine else None
                rows = [r for r in gather_objects(row, ctx) if r is not None]
                if ctx.is_main:
                    table = _append(run, predictor, table, rows, epochs, options.seed)
                    write_table(table, out / TABLE_FILE)
        if not ctx.is_main:
            return StandaloneOutcome(None, run_path, chosen, len(todo))
    rows = _rows_of(run, predictor, table, archs)
    ranking = ranking_of(rows, run_path, epochs, options.seed)
    paths = {"table": str(out / TABLE_FILE), "ranking": str(atomic_write_json(out / RANKING_FILE, ranking))}
    if options.plot:
        paths["plot"] = str(ranking_plot(rows, out / PLOT_FILE, run.space.name, ranking))
    return StandaloneOutcome(ranking, run_path, chosen, len(todo), paths)


def _check_options(options: StandaloneOptions) -> None:
    if options.archs is not None and options.subnets is not None:
        raise AnasError("give either --subnets K or --archs FILE, not both")


def _subnets(run: TrainedRun, options: StandaloneOptions) -> list[Arch]:
    """The subnets to compare, each once, in order."""
    if options.archs is None:
        return spread_sample(run.space, options.subnets or DEFAULT_SUBNETS, 0, run.num_classes)
    archs = list(dict.fromkeys(read_archs(run.space, options.archs)))
    if len(archs) < MIN_SUBNETS:
        raise AnasError(f"{options.archs} holds {len(archs)} distinct subnet(s): a rank correlation needs "
                        f"at least {MIN_SUBNETS}")
    return archs


def subnet_id(arch: Arch) -> str:
    """A short name for a subnet's training folder, the same in every process."""
    return hashlib.sha1(json.dumps(arch.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def _measure(run: TrainedRun, config, arch: Arch, out: Path, on_epoch_end) -> dict[str, Any]:
    """Train ``arch`` on its own and evaluate the supernet on it: one row's results."""
    trained = train_standalone(config, run.space, arch, out / "subnets" / subnet_id(arch), on_epoch_end=on_epoch_end)
    return {"arch": arch.to_dict(), "acc1_standalone": trained.result.acc1, "acc1_supernet": run.evaluate(arch).acc1}


def _append(run: TrainedRun, predictor: Predictor | None, table: pd.DataFrame | None, rows: list[dict[str, Any]],
            epochs: int, seed: int) -> pd.DataFrame:
    archs = [arch_from_dict(run.space, row["arch"]) for row in rows]
    batch = ArchBatch.from_archs(archs)
    frame = archs_to_frame(run.space, batch, batch_costs(run.space, batch, run.num_classes))
    for column in ("acc1_standalone", "acc1_supernet"):
        frame[column] = [row[column] for row in rows]
    frame["acc1_predicted"] = _predicted(predictor, archs)
    frame["epochs"], frame["seed"] = epochs, seed
    return frame if table is None else pd.concat([table, frame], ignore_index=True)


def _run_predictor(run: TrainedRun) -> Predictor | None:
    """The predictor in the run folder (``anas predict-fit`` writes it there), if any."""
    if not has_predictor(run.run_dir.path):
        return None
    predictor = load_predictor(run.run_dir.path)
    predictor.check_space(run.space, str(run.run_dir.path))
    return predictor


def _predicted(predictor: Predictor | None, archs: list[Arch]) -> np.ndarray:
    """The predictor's accuracy of ``archs``; NaN without a predictor."""
    return np.full(len(archs), np.nan) if predictor is None else predictor.predict_archs(archs)


def _read_existing(path: Path, epochs: int, seed: int) -> pd.DataFrame | None:
    """The rows of an earlier (interrupted) command, which must have trained the same way
    (their subnets are checked against the space by the caller)."""
    if not path.exists():
        return None
    table = read_table(path)
    missing = [c for c in ("acc1_standalone", "acc1_supernet", "epochs", "seed") if c not in table.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {', '.join(missing)}: not a table of anas standalone")
    made = set(zip(table["epochs"], table["seed"]))
    if made != {(epochs, seed)}:
        found = ", ".join(f"--epochs {e} --seed {s}" for e, s in sorted(made))
        raise AnasError(f"{path} holds subnets trained with {found}, not --epochs {epochs} --seed {seed}: "
                        f"choose another --out")
    return table


def _rows_of(run: TrainedRun, predictor: Predictor | None, table: pd.DataFrame, archs: list[Arch]) -> pd.DataFrame:
    """The table's rows of ``archs`` (a table may hold more, from an earlier request), with
    the predictor's column as the run's predictor says now."""
    keys = [tuple(row) for row in ArchBatch.from_archs(archs).matrix()]
    index = {key: i for i, key in enumerate(subnet_keys(run.space, table))}
    rows = table.iloc[[index[key] for key in keys]].reset_index(drop=True)
    rows["acc1_predicted"] = _predicted(predictor, archs)
    return rows


def ranking_of(rows: pd.DataFrame, run: str, epochs: int, seed: int) -> dict[str, Any]:
    """How the supernet (and the predictor) rank the subnets against their stand-alone
    accuracy: Kendall tau, Spearman rho, mean absolute difference (scipy)."""
    truth = rows["acc1_standalone"].to_numpy(float)
    predicted = rows["acc1_predicted"].to_numpy(float)
    ranking = {
        "run": run, "subnets": len(rows), "epochs": epochs, "seed": seed,
        "mean_acc1_standalone": float(truth.mean()),
        "supernet": rank_metrics(truth, rows["acc1_supernet"].to_numpy(float)),
        "predictor": None if np.isnan(predicted).any() else rank_metrics(truth, predicted),
    }
    return json_safe(ranking)


def ranking_plot(rows: pd.DataFrame, path: Path, space_name: str, ranking: dict[str, Any]) -> Path:
    """Stand-alone against supernet top-1, one point per subnet labelled with its MFLOPs."""
    figure, ax = new_figure(5.5, 5)
    x, y = rows["acc1_supernet"].to_numpy(float), rows["acc1_standalone"].to_numpy(float)
    ax.scatter(x, y, s=18)
    for xi, yi, mflops in zip(x, y, rows["mflops"].to_numpy(float)):
        ax.annotate(f"{mflops:.3g}", (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel("supernet top-1 (%), BN recalibrated")
    ax.set_ylabel("stand-alone top-1 (%)")
    tau = ranking["supernet"]["kendall_tau"]
    ax.set_title(f"{space_name}: Kendall tau {'undefined' if tau is None else f'{tau:.3f}'} "
                 f"({len(rows)} subnets, labels: MFLOPs)")
    return save_png(figure, path)
