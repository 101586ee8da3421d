"""``anas predict-fit``: evaluate subnets of a run, fit an accuracy predictor."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import DATA_DIR_OPTION, err, is_main_process, out, print_json
from anas.evaluate.predict_fit import PredictFitOptions, predict_fit
from anas.predict.fit import FitReport
from anas.predict.kinds import PREDICTOR_KINDS, PredictorConfig


@app.command("predict-fit")
def predict_fit_command(
    run: Optional[str] = typer.Option(None, "--run", "--run-dir", help="Run folder of `anas train`: evaluate subnets into RUN/records.csv (default: the latest under ./runs with a checkpoint; under torchrun write --run-dir: torchrun takes --run for its own --run-path)."),
    samples: int = typer.Option(64, "--samples", help="Subnets to evaluate, spread over the MFLOPs range (smallest and largest included)."),
    calib_batches: Optional[int] = typer.Option(None, "--calib-batches", help="Training batches for BN recalibration (default: the run's)."),
    split: str = typer.Option("auto", "--split", help="Evaluate on: auto (holdout if the run has one, else val), holdout, val."),
    device: str = typer.Option("cpu", "--device", help="Device for evaluation: cpu or cuda."),
    data_dir: Optional[str] = DATA_DIR_OPTION,
    records: Optional[str] = typer.Option(None, "--records", help="Fit from this records CSV instead of a run (needs --space)."),
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Space of --records (built-in name or YAML file)."),
    kind: str = typer.Option("lightgbm", "--kind", help=f"Predictor kind: {PREDICTOR_KINDS.choices_text()}."),
    test_records: Optional[str] = typer.Option(None, "--test-records", help="Measure the predictor on this second records CSV (then fit on all records)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of the records held out for the metrics (without --test-records)."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Predictor folder (default: the run folder; with --records: the records file's folder)."),
    n_estimators: int = typer.Option(PredictorConfig.n_estimators, "--n-estimators", help="LightGBM boosting rounds."),
    learning_rate: float = typer.Option(PredictorConfig.learning_rate, "--learning-rate", help="LightGBM learning rate."),
    num_leaves: Optional[int] = typer.Option(None, "--num-leaves", help="LightGBM leaves per tree (default: min(31, max(4, n/10)))."),
    target: str = typer.Option("acc1", "--target", help="Records column to predict: acc1, or e.g. latency_ms for a latency model (from --records)."),
    explain: bool = typer.Option(False, "--explain", help="With --kind linear: write coefficients.csv, effects.csv and explain.png."),
    bn_reduce: str = typer.Option(PredictorConfig.bn_reduce, "--bn-reduce", help="With --kind bn: sum or mean of the blocks' indicators."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled subnets, the split and the predictor."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Do not draw predictor.png."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_output: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
) -> None:
    """Evaluate sampled subnets (BN recalibrated) and fit an accuracy predictor (LightGBM by default), or read a
    zero-cost one from the run's checkpoint (--kind bn)."""
    options = PredictFitOptions(
        run=run, records=records, space=space, samples=samples, calib_batches=calib_batches, split=split,
        device=device, data_dir=data_dir, kind=kind, test_records=test_records, test_fraction=test_fraction, out=out_dir,
        config=PredictorConfig(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                               seed=seed, bn_reduce=bn_reduce),
        target=target, explain=explain,
        plot=not no_plot, progress=not (quiet or json_output) and is_main_process())
    outcome = predict_fit(options)
    if outcome.report is None:  # not the main process of a distributed run
        return
    if outcome.run_was_chosen and not json_output:
        err.print(f"run: {outcome.run} (the latest under ./runs with a checkpoint)")
    _show(outcome.report, json_output)


def _show(report: FitReport, json_output: bool) -> None:
    if json_output:
        print_json(report.to_dict())
        return
    if "mae" in report.metrics:
        what = "accuracy" if report.target == "acc1" else report.target
        title = f"{report.kind} {what} predictor of {report.space} on {report.n_test} held-out records"
    else:
        title = f"{report.kind} predictor of {report.space} (zero cost) on {report.n_test} records"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if any(v != v for v in report.metrics.values()):  # NaN
        err.print("note: some scores are constant (too few or too similar records): their rank correlations are "
                  "undefined")
    for suffix, name in (("", ""), ("_mflops", " of MFLOPs alone"), ("_params", " of params alone")):
        if f"kendall_tau{suffix}" in report.metrics:
            table.add_row(f"Kendall tau{name}", f"{report.metrics['kendall_tau' + suffix]:.3f}")
            table.add_row(f"Spearman rho{name}", f"{report.metrics['spearman_rho' + suffix]:.3f}")
    if "mae" in report.metrics:
        unit = "top-1 %" if report.target == "acc1" else report.target
        table.add_row(f"mean absolute error ({unit})", f"{report.metrics['mae']:.3f}")
        table.add_row("records (fit / test / all)", f"{report.n_train} / {report.n_test} / {report.n_records}")
        table.add_row("evaluated now", str(report.evaluated_now))
    if report.duplicates_merged:
        table.add_row("repeated subnets merged (acc1 averaged)", str(report.duplicates_merged))
    if report.metrics:
        out.print(table)
    else:
        out.print(f"{report.kind} predictor of {report.space} written (no records to measure it on: "
                  f"anas predict-fit --samples N evaluates some)")
    for name, path in report.paths.items():
        out.print(f"{name}: {path}")
