"""``anas predict-fit``: evaluate subnets of a run, fit an accuracy predictor."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from anas.cli import app
from anas.cli.common import ReportWithProgress, err, out, print_json
from anas.cli.flags import options_command
from anas.evaluate.predict_fit import PredictFitOptions, predict_fit
from anas.options import build, values_from_config
from anas.predict.fit import FitReport


@app.command("predict-fit")
@options_command(PredictFitOptions, ReportWithProgress)
def predict_fit_command(values: dict[str, Any], cli: ReportWithProgress, config: str | None) -> None:
    """Evaluate sampled subnets (BN recalibrated) and fit an accuracy predictor (LightGBM by default), or read a
    zero-cost one from the run's checkpoint (--kind bn)."""
    outcome = predict_fit(build(PredictFitOptions, values_from_config(PredictFitOptions, values, config)),
                          progress=cli.progress)
    if outcome.report is None:  # not the main process of a distributed run
        return
    if outcome.run_was_chosen and not cli.json_output:
        err.print(f"run: {outcome.run} (the latest under ./runs with a checkpoint)")
    _show(outcome.report, cli.json_output)


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
