"""``anas search``: the best subnets under MFLOPs / params / latency budgets."""

from __future__ import annotations

from typing import Optional

import numpy as np
import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import DATA_DIR_OPTION, err, out, print_json, use_table_threads
from anas.latency.measure import LATENCY_DEVICES_TEXT
from anas.search.runner import SearchOptions, SearchReport, search_subnets
from anas.search.strategies import STRATEGIES


@app.command("search")
def search_command(
    flops: str = typer.Option(..., "--flops", help="MFLOPs band LO-HI, e.g. 400-600."),
    predictor: Optional[str] = typer.Option(None, "--predictor", help="Predictor folder of anas predict-fit; it gives the space (default: the latest under ./runs)."),
    params: Optional[str] = typer.Option(None, "--params", help="Parameter band in millions, LO-HI."),
    latency: Optional[str] = typer.Option(None, "--latency", help="Latency band in ms, LO-HI: a bound and a third objective."),
    latency_predictor: Optional[str] = typer.Option(None, "--latency-predictor", help="Latency model (anas predict-fit --target latency_ms) that stands in for timing each subnet under --latency."),
    latency_table: Optional[str] = typer.Option(None, "--latency-table", help="Latency table (anas latency-table) that predicts each subnet's latency under --latency; --verify times the verified ones."),
    device: Optional[str] = typer.Option(None, "--device", help=f"Device for --latency: {LATENCY_DEVICES_TEXT} (default: cpu, or the latency table's); --verify evaluates on its PyTorch device."),
    latency_batch: Optional[int] = typer.Option(None, "--latency-batch", min=1, help="Batch size for --latency (default: 1, or the latency table's)."),
    latency_runs: int = typer.Option(10, "--latency-runs", min=1, help="Timed runs per subnet for --latency (median)."),
    strategy: str = typer.Option("nsga2", "--strategy", help=f"Search strategy: {STRATEGIES.choices_text()}."),
    budget: int = typer.Option(5632, "--budget", help="Predictor calls (subnets scored); 5632 = 512 + 20 x 256, the published search."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: PREDICTOR/search-LO-HI)."),
    run: Optional[str] = typer.Option(None, "--run", help="Run folder of anas train for --verify (default: the predictor's folder if it holds a checkpoint, else the latest run)."),
    verify: int = typer.Option(0, "--verify", min=0, help="Evaluate the K best front members for real (BN recalibrated)."),
    data_dir: Optional[str] = DATA_DIR_OPTION,
    calib_batches: Optional[int] = typer.Option(None, "--calib-batches", help="BN recalibration batches for --verify (default: the run's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    json_output: bool = typer.Option(False, "--json", help="Print the best subnet and the paths as one JSON object."),
) -> None:
    """Search the subnets inside the bounds for the best predicted accuracy per MFLOPs."""
    show = not (quiet or json_output)
    options = SearchOptions(flops=flops, predictor=predictor, params=params, latency=latency,
                            latency_predictor=latency_predictor, latency_table=latency_table, device=device,
                            latency_batch=latency_batch, latency_runs=latency_runs, strategy=strategy, budget=budget,
                            seed=seed, out=out_dir, run=run, verify=verify, calib_batches=calib_batches, data_dir=data_dir,
                            progress=show)
    if latency_table is not None:
        use_table_threads(latency_table)
    report = search_subnets(options)
    if json_output:
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
