"""``anas latency-table``: time every layer of a space on one device (HURRICANE)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from anas.cli import app
from anas.cli.common import ReportWithProgress, out, print_json
from anas.cli.flags import options_command
from anas.latency.lookup_table import LatencyTableOptions, build_latency_table, default_table_path
from anas.options import build, values_from_config
from anas.space.schema import load_space


@app.command("latency-table")
@options_command(LatencyTableOptions, ReportWithProgress)
def latency_table_command(values: dict[str, Any], cli: ReportWithProgress, config: str | None) -> None:
    """Time every distinct layer of a space on one device, then fit whole-network latency."""
    options = build(LatencyTableOptions, values_from_config(LatencyTableOptions, values, config))
    table_config = options.table_config()
    search_space = load_space(options.space)
    path = Path(options.out) if options.out else default_table_path(search_space, table_config)
    if table_config.threads is not None and table_config.device != "ort-cpu":
        torch.set_num_threads(table_config.threads)  # process-wide: set here, by the command line
    start = time.perf_counter()
    table = build_latency_table(search_space, table_config, path, options.num_classes, options.fresh,
                                progress=cli.progress)
    seconds = time.perf_counter() - start
    fit = table.fit
    if cli.json_output:
        print_json({"path": str(path), "space": search_space.name, "device": table_config.device,
                    "batch": table_config.batch, "threads": table_config.threads, "layers": len(table.entries), "seconds": seconds,
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
