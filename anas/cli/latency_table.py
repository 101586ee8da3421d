"""``anas latency-table``: time every layer of a space on one device (HURRICANE)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch
import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import out, print_json
from anas.cli.options import with_config_options
from anas.latency.table import TableConfig, build_latency_table, default_table_path
from anas.space.schema import load_space


@app.command("latency-table")
@with_config_options(TableConfig)
def latency_table_command(
    options: dict[str, Any],
    space: str = typer.Option("attentive-nas", "--space", "-s", help="Built-in space (attentive-nas, cifar, tiny) or a YAML file."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", min=1, help="Classes of the classifier head (default: the space's)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="Table file (default: latency-SPACE-DEVICE-bBATCH.json); an unfinished one is resumed."),
    fresh: bool = typer.Option(False, "--fresh", help="Measure everything again, replacing the table at --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    json_output: bool = typer.Option(False, "--json", help="Print the fit and the path as one JSON object."),
) -> None:
    """Time every distinct layer of a space on one device, then fit whole-network latency."""
    config = TableConfig(**{name: value for name, value in options.items() if value is not None})
    search_space = load_space(space)
    path = out_path or default_table_path(search_space, config)
    if config.threads is not None and config.device != "ort-cpu":
        torch.set_num_threads(config.threads)  # process-wide: set here, by the command line
    start = time.perf_counter()
    table = build_latency_table(search_space, config, path, num_classes, fresh, progress=not (quiet or json_output))
    seconds = time.perf_counter() - start
    fit = table.fit
    if json_output:
        print_json({"path": str(path), "space": search_space.name, "device": config.device, "batch": config.batch,
                    "threads": config.threads, "layers": len(table.entries), "seconds": seconds,
                    "overhead_ms": fit.overhead_ms, "scale": fit.scale, "per_layer_ms": fit.per_layer_ms,
                    "per_mparam_ms": fit.per_mparam_ms,
                    "fit_subnets": len(fit.subnets), "spearman": fit.spearman,
                    "median_rel_error": fit.median_rel_error})
        return
    summary = Table(title=f"latency table of {table.describe()}", show_header=False)
    summary.add_row("layers timed", f"{len(table.entries)}")
    summary.add_row("whole-network fit", f"{fit.overhead_ms:.3f} ms + {fit.scale:.3f} x layer sum "
                                         f"{fit.per_layer_ms:+.4f} ms x layers {fit.per_mparam_ms:+.4f} ms x "
                                         f"params (M)")
    measured = [s["measured_ms"] for s in fit.subnets]
    summary.add_row(f"on the {len(fit.subnets)} subnets timed whole",
                    f"{min(measured):.3f}-{max(measured):.3f} ms; Spearman {fit.spearman:.3f}, median relative "
                    f"error {100 * fit.median_rel_error:.1f} %")
    out.print(summary)
    out.print(f"wrote {path} ({seconds:.0f} s)")
