"""``anas standalone``: train subnets from scratch and measure how well the supernet ranks them."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from anas.cli import app
from anas.cli.common import ReportWithProgress, err, out, print_json
from anas.cli.flags import options_command
from anas.evaluate.standalone import StandaloneOptions, standalone
from anas.options import build, values_from_config


@app.command("standalone")
@options_command(StandaloneOptions, ReportWithProgress)
def standalone_command(values: dict[str, Any], cli: ReportWithProgress, config: str | None) -> None:
    """Train subnets from scratch with the run's recipe; rank them by supernet and predictor (--json: ranking.json's
    content)."""
    outcome = standalone(build(StandaloneOptions, values_from_config(StandaloneOptions, values, config)),
                         progress=cli.progress)
    if outcome.ranking is None:  # not the main process of a distributed run
        return
    json_output = cli.json_output
    if outcome.run_was_chosen and not json_output:
        err.print(f"run: {outcome.run} (the latest under ./runs with a checkpoint)")
    if json_output:
        print_json(outcome.ranking)
        return
    ranking = outcome.ranking
    table = Table(title=f"ranking of {ranking['subnets']} subnets against their stand-alone top-1 "
                        f"({ranking['epochs']} epochs, seed {ranking['seed']})")
    for column in ("ranked by", "Kendall tau", "Spearman rho", "mean |difference| (top-1 %)"):
        table.add_column(column, justify="left" if column == "ranked by" else "right")
    for name in ("supernet", "predictor"):
        metrics = ranking[name]
        if metrics is not None:
            table.add_row(name, *(_number(metrics[key]) for key in ("kendall_tau", "spearman_rho", "mae")))
    out.print(table)
    if ranking["predictor"] is None:
        out.print("no predictor in the run folder: fit one with `anas predict-fit` to rank it too")
    out.print(f"trained now: {outcome.trained_now}")
    for name, path in outcome.paths.items():
        out.print(f"{name}: {path}")


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
