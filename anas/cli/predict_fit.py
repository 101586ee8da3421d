"""``anas predict-fit``: evaluate subnets of a run, fit a LightGBM accuracy predictor."""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import err, out, print_json
from anas.errors import AnasError
from anas.evaluate.predict_fit import FitReport, collect_records, fit_and_report
from anas.predict.predictor import PredictorConfig, split_indices
from anas.evaluate.records import read_records
from anas.space.space import load_space

P = PredictorConfig()


@app.command("predict-fit")
def predict_fit(
    run: Optional[str] = typer.Option(None, "--run", "--run-dir", help="Run folder of `anas train`: evaluate subnets into RUN/records.csv (under torchrun write --run-dir: torchrun takes --run for its own --run-path)."),
    samples: int = typer.Option(64, "--samples", help="Subnets to evaluate, spread over the MFLOPs range (smallest and largest included)."),
    calib_batches: Optional[int] = typer.Option(None, "--calib-batches", help="Training batches for BN recalibration (default: the run's)."),
    split: str = typer.Option("auto", "--split", help="Evaluate on: auto (holdout if the run has one, else val), holdout, val."),
    device: str = typer.Option("cpu", "--device", help="Device for evaluation: cpu or cuda."),
    records: Optional[str] = typer.Option(None, "--records", help="Fit from this records CSV instead of a run (needs --space)."),
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Space of --records (built-in name or YAML file)."),
    test_records: Optional[str] = typer.Option(None, "--test-records", help="Measure the predictor on this second records CSV (then fit on all records)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of the records held out for the metrics (without --test-records)."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Predictor folder (default: the run folder; with --records: the records file's folder)."),
    n_estimators: int = typer.Option(P.n_estimators, "--n-estimators", help="LightGBM boosting rounds."),
    learning_rate: float = typer.Option(P.learning_rate, "--learning-rate", help="LightGBM learning rate."),
    num_leaves: Optional[int] = typer.Option(None, "--num-leaves", help="LightGBM leaves per tree (default: min(31, max(4, n/10)))."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled subnets, the split and LightGBM."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Do not draw predictor.png."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_output: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Evaluate sampled subnets (BN recalibrated) and fit a LightGBM accuracy predictor."""
    if (run is None) == (records is None):
        raise AnasError("give either --run RUN_DIR or --records FILE.csv --space S")
    config = PredictorConfig(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves, seed=seed)
    evaluated_now = 0
    if run is not None:
        from anas.evaluate.trained import load_trained_run

        trained = load_trained_run(run, device)
        if space is not None and load_space(space) != trained.space:
            raise AnasError(f"run {run} is of space {trained.space.name}, not {space}")
        search_space, num_classes = trained.space, trained.num_classes
        if test_records is None and not (trained.run_dir.path / "records.csv").exists():
            split_indices(samples, test_fraction, seed)  # refuse too few records before evaluating any
        show = not (quiet or json_output) and os.environ.get("RANK", "0") == "0"  # torchrun: rank 0 reports
        with _progress(show) as progress:
            _, table, evaluated_now = collect_records(trained, samples, calib_batches, split, seed,
                                                         _ticker(progress) if progress is not None else None)
        if table is None:  # not the main process of a distributed run
            return
        frame = table  # the records as just written to RUN/records.csv
        out_folder = out_dir or str(trained.run_dir.path)
    else:
        if space is None:
            raise AnasError("--records needs --space (the space its subnets belong to)")
        search_space = load_space(space)
        num_classes = None
        frame = read_records(records, search_space)
        out_folder = out_dir or str(Path(records).resolve().parent)
    test_frame = read_records(test_records, search_space, num_classes) if test_records else None
    report = fit_and_report(search_space, frame, out_folder, num_classes=num_classes, test_records=test_frame,
                            test_fraction=test_fraction, seed=seed, config=config, plot=not no_plot)
    report.evaluated_now = evaluated_now
    _show(report, json_output)


def _progress(show: bool):
    if not show:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("evaluating subnets"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err)


def _ticker(progress):
    def start(total: int, rank: int):
        task = progress.add_task("evaluate", total=total)
        return lambda n: progress.update(task, advance=n)

    return start


def _show(report: FitReport, json_output: bool) -> None:
    if json_output:
        print_json(report.to_dict())
        return
    table = Table(title=f"accuracy predictor of {report.space} on {report.n_test} held-out records")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if any(v != v for v in report.metrics.values()):  # NaN
        err.print("note: the predictions are constant (too few or too similar records): the rank correlations are undefined")
    table.add_row("Kendall tau", f"{report.metrics['kendall_tau']:.3f}")
    table.add_row("Spearman rho", f"{report.metrics['spearman_rho']:.3f}")
    table.add_row("mean absolute error (top-1 %)", f"{report.metrics['mae']:.3f}")
    table.add_row("records (fit / test / all)", f"{report.n_train} / {report.n_test} / {report.n_records}")
    table.add_row("evaluated now", str(report.evaluated_now))
    out.print(table)
    for name, path in report.paths.items():
        out.print(f"{name}: {path}")
