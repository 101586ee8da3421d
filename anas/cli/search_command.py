"""``anas search``: the best subnets under MFLOPs / params / latency budgets."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.table import Table

from anas.cli import app
from anas.cli.common import ReportWithProgress, err, out, print_json, use_table_threads
from anas.cli.flags import options_command
from anas.options import build, values_from_config
from anas.search.runner import SearchOptions, SearchReport, search_subnets


@app.command("search")
@options_command(SearchOptions, ReportWithProgress)
def search_command(values: dict[str, Any], cli: ReportWithProgress, config: str | None) -> None:
    """Search the subnets inside the bounds for the best predicted accuracy per MFLOPs."""
    options = build(SearchOptions, values_from_config(SearchOptions, values, config))
    if options.latency_table is not None:
        use_table_threads(options.latency_table)
    report = search_subnets(options, progress=cli.progress)
    if cli.json_output:
        print_json(_json_record(report))
        return
    for what, path in report.chosen.items():
        err.print(f"{what}: {path} (taken by default: --{what} names another)")
    _show(report)


def _json_record(report: SearchReport) -> dict:
    result, best, measured = report.result, report.best, report.measured
    archive = result.archive
    record = {"best": result.arch(best).to_dict(), "mflops": float(archive.mflops[best]),
              "params_m": float(archive.params_m[best]), "pred_acc1": float(archive.pred_acc1[best]),
              "strategy": result.strategy, "calls": result.calls, "seconds": result.seconds,
              "front_size": len(result.front), "paths": report.paths}
    if report.chosen:
        record["chosen"] = report.chosen
    if measured:
        record["acc1"] = measured.get(best)
        record["verified"] = [{"mflops": float(archive.mflops[i]), "pred_acc1": float(archive.pred_acc1[i]),
                               "acc1": acc, **_latency_fields(report, i)} for i, acc in measured.items()]
    return record


def _latency_fields(report: SearchReport, index: int) -> dict:
    """Predicted and timed latency of a verified subnet, when latency was predicted."""
    if index not in report.measured_latency:
        return {}
    return {"latency_ms": float(report.result.archive.latency_ms[index]),
            "measured_latency_ms": report.measured_latency[index]}


def score_text(value: float, label: str) -> str:
    """A predicted accuracy with two decimals; another score with four significant digits."""
    return f"{value:.2f}" if label.endswith("(%)") else f"{value:.4g}"


def _show(report: SearchReport) -> None:
    result, best, measured = report.result, report.best, report.measured
    archive = result.archive
    table = Table(title=f"Pareto front: {len(result.front)} subnets ({result.strategy}, {result.calls} predictor "
                        f"calls, {result.seconds:.1f} s)")
    latency = not np.all(np.isnan(archive.latency_ms[result.front]))
    timed = bool(report.measured_latency)
    columns = ("", "MFLOPs", "params (M)", result.score_label.removesuffix(" (%)"),
               *(["measured top-1"] if measured else []), *(["latency (ms)"] if latency else []),
               *(["timed (ms)"] if timed else []), "resolution", "depth")
    for column in columns:
        table.add_column(column, justify="right")
    for index in result.front[:20]:
        arch = result.arch(int(index))
        row = ["*" if index == best else "", f"{archive.mflops[index]:.2f}", f"{archive.params_m[index]:.2f}",
               score_text(archive.pred_acc1[index], result.score_label)]
        if measured:
            row.append(f"{measured[int(index)]:.2f}" if int(index) in measured else "")
        if latency:
            row.append(f"{archive.latency_ms[index]:.3f}")
        if timed:
            row.append(f"{report.measured_latency[int(index)]:.3f}" if int(index) in report.measured_latency else "")
        table.add_row(*row, str(arch.resolution), " ".join(map(str, arch.depth)))
    out.print(table)
    if len(result.front) > 20:
        out.print(f"... {len(result.front) - 20} more in {report.paths['pareto_csv']}")
    out.print(f"best (*): {report.paths['best_json']}   plot: {report.paths['pareto_png']}")
