"""``anas search``: the best subnets under MFLOPs / params / latency budgets."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import err, out, print_json
from anas.errors import AnasError
from anas.io import atomic_write_text
from anas.latency.measure import LatencyConfig, resolve_device
from anas.predict.predictor import Predictor
from anas.search.search import (LatencyCache, SearchProblem, best_record, choose_best, front_frame, parse_band, plot_search,
                         search)
from anas.space.table import write_table


@app.command("search")
def search_command(
    flops: str = typer.Option(..., "--flops", help="MFLOPs band LO-HI, e.g. 400-600."),
    predictor_dir: str = typer.Option(..., "--predictor", help="Predictor folder of anas predict-fit (gives the space)."),
    params: Optional[str] = typer.Option(None, "--params", help="Parameter band in millions, LO-HI."),
    latency: Optional[str] = typer.Option(None, "--latency", help="Latency band in ms, LO-HI: a bound and a third objective."),
    device: str = typer.Option("cpu", "--device", help="Device for --latency: cpu or cuda."),
    latency_batch: int = typer.Option(1, "--latency-batch", min=1, help="Batch size for --latency."),
    latency_runs: int = typer.Option(10, "--latency-runs", min=1, help="Timed runs per subnet for --latency (median)."),
    strategy: str = typer.Option("nsga2", "--strategy", help="nsga2 | evolution | random."),
    budget: int = typer.Option(5632, "--budget", help="Predictor calls (subnets scored); 5632 = 512 + 20 x 256, the published search."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search."),
    out_dir: Optional[str] = typer.Option(None, "--out", "-o", help="Output folder (default: PREDICTOR/search-LO-HI)."),
    run: Optional[str] = typer.Option(None, "--run", help="Run folder of anas train, for --verify."),
    verify: int = typer.Option(0, "--verify", min=0, help="Evaluate the K best front members for real (BN recalibrated)."),
    calib_batches: Optional[int] = typer.Option(None, "--calib-batches", help="BN recalibration batches for --verify (default: the run's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
    json_output: bool = typer.Option(False, "--json", help="Print the best subnet and the paths as one JSON object."),
) -> None:
    """Search the subnets inside the bounds for the best predicted accuracy per MFLOPs."""
    band = parse_band(flops, "--flops")
    params_band = parse_band(params, "--params") if params else None
    latency_band = parse_band(latency, "--latency") if latency else None
    if verify and run is None:
        raise AnasError("--verify needs --run RUN_DIR (the trained supernet to evaluate the subnets with)")
    if latency_band is not None:
        resolve_device(device)
    predictor = Predictor.load(predictor_dir)
    space = predictor.space
    trained = None
    if run is not None:
        from anas.evaluate.trained import load_trained_run

        trained = load_trained_run(run, "cuda" if device.startswith("cuda") else "cpu")
        predictor.check_space(trained.space, f"run {run}")
    measure = (LatencyCache(space, LatencyConfig(device, latency_batch, 3, latency_runs), predictor.num_classes)
               if latency_band is not None else None)
    problem = SearchProblem(space, predictor, band, params_band, latency_band, latency_band is not None, measure,
                            predictor.num_classes)
    show = not (quiet or json_output)
    with (err.status(f"searching {band} MFLOPs with {strategy} ({budget} predictor calls)...") if show else nullcontext()):
        result = search(problem, strategy, budget, seed)
    measured = _verify(result, trained, verify, calib_batches, show) if verify else {}
    best = choose_best(result, measured)
    folder = Path(out_dir) if out_dir else Path(predictor_dir) / f"search-{band}"
    paths = {
        "pareto_csv": str(write_table(front_frame(result, measured), folder / "pareto.csv")),
        "pareto_png": str(plot_search(result, band, folder / "pareto.png", best)),
        "best_json": str(atomic_write_text(folder / "best.json",
                                           json.dumps(best_record(result, best, measured), indent=2) + "\n")),
    }
    _report(result, best, measured, paths, json_output)


def _verify(result, trained, k: int, calib_batches: int | None, show: bool) -> dict[int, float]:
    """Measured top-1 of the ``k`` best predicted front members."""
    chosen = result.front[:k]
    measured = {}
    progress = None
    if show:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), console=err)
    with progress or nullcontext():
        task = progress.add_task("verify", total=len(chosen)) if progress else None
        for index in chosen:
            measured[int(index)] = trained.evaluate(result.arch(int(index)), calib_batches).acc1
            if progress:
                progress.update(task, advance=1)
    return measured


def _report(result, best: int, measured: dict[int, float], paths: dict[str, str], json_output: bool) -> None:
    archive = result.archive
    if json_output:
        record = {"best": result.arch(best).to_dict(), "mflops": float(archive.mflops[best]),
                  "params_m": float(archive.params_m[best]), "pred_acc1": float(archive.pred_acc1[best]),
                  "strategy": result.strategy, "calls": result.calls, "seconds": result.seconds,
                  "front_size": len(result.front), "paths": paths}
        if measured:
            record["acc1"] = measured.get(best)
            record["verified"] = [{"mflops": float(archive.mflops[i]), "pred_acc1": float(archive.pred_acc1[i]),
                                   "acc1": acc} for i, acc in measured.items()]
        print_json(record)
        return
    table = Table(title=f"Pareto front: {len(result.front)} subnets ({result.strategy}, {result.calls} predictor "
                        f"calls, {result.seconds:.1f} s)")
    for column in ("", "MFLOPs", "params (M)", "predicted top-1", *(["measured top-1"] if measured else []), "resolution",
                   "depth"):
        table.add_column(column, justify="right")
    for index in result.front[:20]:
        arch = result.arch(int(index))
        row = ["*" if index == best else "", f"{archive.mflops[index]:.2f}", f"{archive.params_m[index]:.2f}",
               f"{archive.pred_acc1[index]:.2f}"]
        if measured:
            row.append(f"{measured[int(index)]:.2f}" if int(index) in measured else "")
        table.add_row(*row, str(arch.resolution), " ".join(map(str, arch.depth)))
    out.print(table)
    if len(result.front) > 20:
        out.print(f"... {len(result.front) - 20} more in {paths['pareto_csv']}")
    out.print(f"best (*): {paths['best_json']}   plot: {paths['pareto_png']}")
