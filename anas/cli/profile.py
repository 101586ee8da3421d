"""``anas profile``: MFLOPs, params and latency of subnets; cost tables of many."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from anas.checks import check_seed
from anas.cli import app
from anas.cli.common import err, out, print_json
from anas.errors import AnasError
from anas.latency.measure import LATENCY_DEVICES_TEXT, LatencyConfig, check_latency_device
from anas.latency.profile import ArchProfile, Latency, cost_table, profile_arch, summarize_space
from anas.latency.table import load_latency_model
from anas.space.arch import parse_arch
from anas.space.distribution import read_distribution
from anas.space.schema import load_space
from anas.space.table import write_table


@app.command()
def profile(
    space: str = typer.Option("attentive-nas", "--space", "-s", help="Built-in space (attentive-nas, cifar, tiny) or a YAML file."),
    arch: Optional[str] = typer.Option(None, "--arch", "-a", help="Subnet: JSON file, JSON string, min, max, random, or a model name (a0..a6)."),
    num_classes: Optional[int] = typer.Option(None, "--num-classes", min=1, help="Classes of the classifier (default: the space's)."),
    latency: bool = typer.Option(False, "--latency", help="Also time the static network's forward pass (with --sample: of every subnet, in a latency_ms column)."),
    latency_table: Optional[Path] = typer.Option(None, "--latency-table", help="Predict latency_ms from this latency table (anas latency-table) instead of timing."),
    device: Optional[str] = typer.Option(None, "--device", help=f"Device for --latency: {LATENCY_DEVICES_TEXT} (default: cpu); with --latency-table, the table's must match."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size for --latency (default: 1); with --latency-table, the table's must match."),
    runs: int = typer.Option(50, "--runs", min=1, help="Timed runs for --latency (the median is reported)."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Untimed warm-up runs for --latency."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="Write a cost table of this many random subnets (needs --out)."),
    distribution: Optional[Path] = typer.Option(None, "--distribution", help="With --sample: draw the subnets from this learned distribution.json (anas search --strategy fpnas)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV file for --sample."),
    seed: int = typer.Option(0, "--seed", help="Seed of random subnets (--sample, --arch random)."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Cost of a subnet (--arch), a cost table of random subnets (--sample), or a summary of the space."""
    search_space = load_space(space)
    check_seed(seed)
    latency_source = _latency_source(search_space, num_classes, latency, latency_table, device, batch_size, warmup, runs)
    if sample is not None:
        if arch is not None:
            raise AnasError("--sample and --arch exclude each other")
        if out_path is None:
            raise AnasError("--sample needs --out FILE.csv")
        learned = read_distribution(search_space, distribution) if distribution is not None else None
        _write_cost_table(search_space, sample, out_path, seed, num_classes, latency_source, json_output, learned)
    elif out_path is not None:
        raise AnasError("--out goes with --sample")
    elif distribution is not None:
        raise AnasError("--distribution goes with --sample N --out FILE.csv")
    elif arch is None:
        _show_summary(search_space, num_classes, json_output)
    else:
        subnet = parse_arch(search_space, arch, seed)
        if isinstance(latency_source, LatencyConfig) and not json_output:
            with err.status(f"timing {runs} runs on {latency_source.device}..."):
                result = profile_arch(search_space, subnet, num_classes, latency_source)
        else:
            result = profile_arch(search_space, subnet, num_classes, latency_source)
        _show_arch(result, search_space.name, latency_source, json_output)


def _latency_source(space, num_classes: int | None, latency: bool, table: Path | None, device: str | None,
                    batch_size: int | None, warmup: int, runs: int) -> Latency | None:
    """Timing (``--latency``), a latency table's predictions (``--latency-table``), or neither."""
    if latency and table is not None:
        raise AnasError("--latency times each subnet and --latency-table predicts it: give one")
    if table is not None:
        return load_latency_model(table, space, num_classes, device, batch_size)
    if latency:
        device = device or "cpu"
        check_latency_device(device)
        return LatencyConfig(device, batch_size or 1, warmup, runs)
    return None


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


def _show_summary(space, num_classes: int | None, json_output: bool) -> None:
    summary = summarize_space(space, num_classes)
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


def _write_cost_table(space, n: int, path: Path, seed: int, num_classes: int | None, latency: Latency | None,
                      json_output: bool, distribution=None) -> None:
    start = time.perf_counter()
    frame = cost_table(space, n, seed, num_classes, latency, progress=not json_output, distribution=distribution)
    write_table(frame, path)
    seconds = time.perf_counter() - start
    mflops = frame["mflops"]
    stats = {"min": float(mflops.min()), "median": float(mflops.median()), "max": float(mflops.max())}
    if json_output:
        print_json({"space": space.name, "rows": n, "path": str(path), "seed": seed, "mflops": stats, "seconds": seconds})
        return
    out.print(
        f"wrote {n} subnets of {space.name} to {path} in {seconds:.2f} s "
        f"(MFLOPs min {stats['min']:.1f}, median {stats['median']:.1f}, max {stats['max']:.1f})"
    )
