"""``anas profile``: MFLOPs, params and latency of subnets; cost tables of many."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from anas.cli import app
from anas.cli.common import Report, err, out, print_json
from anas.cli.flags import options_command
from anas.latency.measure import LatencyConfig
from anas.latency.profile import ArchProfile, Latency, ProfileOptions, profile
from anas.options import build, values_from_config


@app.command("profile")
@options_command(ProfileOptions, Report)
def profile_command(values: dict[str, Any], cli: Report, config: str | None) -> None:
    """Cost of a subnet (--arch), a cost table of random subnets (--sample), or a summary of the space."""
    options = build(ProfileOptions, values_from_config(ProfileOptions, values, config))
    timing = options.arch is not None and options.latency and not cli.json_output
    if timing:
        with err.status(f"timing {options.runs} runs..."):
            outcome = profile(options)
    else:
        outcome = profile(options, progress=not cli.json_output)
    if outcome.table is not None:
        _show_table(outcome.space.name, outcome.table, cli.json_output)
    elif outcome.summary is not None:
        _show_summary(outcome.summary, cli.json_output)
    else:
        _show_arch(outcome.arch, outcome.space.name, outcome.latency, cli.json_output)


def _show_arch(result: ArchProfile, space_name: str, latency: Latency | None, json_output: bool) -> None:
    if json_output:
        data = result.to_dict()
        if isinstance(latency, LatencyConfig):
            data.update(device=latency.device, batch_size=latency.batch_size, runs=latency.runs)
        elif latency is not None:
            config = latency.table.config
            data.update(device=config.device, batch_size=config.batch, latency_source="table")
        print_json({"space": space_name, **data})
        return
    table = Table(title=f"subnet of {space_name}", show_header=False)
    arch = result.arch.to_dict()
    for key, value in arch.items():
        table.add_row(key, " ".join(str(v) for v in value) if isinstance(value, list) else str(value))
    table.add_row("MFLOPs", f"{result.mflops:.2f}")
    table.add_row("params (M)", f"{result.params_m:.3f}")
    if isinstance(latency, LatencyConfig):
        table.add_row(f"latency (ms, median, {latency.device}, batch {latency.batch_size})", f"{result.latency_ms:.3f}")
    elif latency is not None:
        table.add_row(f"latency (ms, predicted: table of {latency.table.describe()})", f"{result.latency_ms:.3f}")
    out.print(table)


def _show_summary(summary: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print_json(summary)
        return
    table = Table(title=f"space {summary['space']}: {summary['num_subnets']:.3e} subnets, {summary['num_classes']} classes")
    table.add_column("subnet")
    table.add_column("resolution", justify="right")
    table.add_column("MFLOPs", justify="right")
    table.add_column("params (M)", justify="right")
    for key in ("smallest", "largest"):
        row = summary[key]
        table.add_row(key, str(row["arch"]["resolution"]), f"{row['mflops']:.2f}", f"{row['params_m']:.3f}")
    out.print(table)
    if summary["models"]:
        out.print(f"named subnets for --arch: {', '.join(summary['models'])}")


def _show_table(space_name: str, written: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print_json({"space": space_name, **written})
        return
    stats = written["mflops"]
    out.print(f"wrote {written['rows']} subnets of {space_name} to {written['path']} in {written['seconds']:.2f} s "
              f"(MFLOPs min {stats['min']:.1f}, median {stats['median']:.1f}, max {stats['max']:.1f})")
