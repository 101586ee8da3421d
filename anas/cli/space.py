"""``anas space``: commands that make new search spaces (``reduce``: hardware-aware)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import out, print_json
from anas.latency.reduce import Reduction, reduce_space, write_space
from anas.latency.table import read_latency_table
from anas.space.schema import load_space

space_app = typer.Typer(help="Make new search spaces.", no_args_is_help=True)
app.add_typer(space_app, name="space")


@space_app.command("reduce")
def reduce_command(
    latency_table: Path = typer.Option(..., "--latency-table", help="Latency table of the device (anas latency-table)."),
    space: Optional[str] = typer.Option(None, "--space", "-s", help="Space to reduce (default: the table's)."),
    ratio: float = typer.Option(1.5, "--ratio", help="Drop a choice whose ms per MFLOP is more than this many times its stage's median (>= 1)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name of the new space (default: SPACE-DEVICE)."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="YAML file to write (default: NAME.yaml)."),
    json_output: bool = typer.Option(False, "--json", help="Print what was dropped and the latency ranges as one JSON object."),
) -> None:
    """Drop the kernel / expand / width choices that are slow on the table's device for their MFLOPs."""
    table = read_latency_table(latency_table)
    source = load_space(space) if space is not None else table.space
    reduction = reduce_space(table, source, ratio, name)
    path = write_space(reduction.space, out_path or Path(f"{reduction.space.name}.yaml"))
    if json_output:
        print_json({"path": str(path), "space": reduction.space.name, "from": source.name, "ratio": ratio,
                    "device": table.config.device,
                    "dropped": [{"stage": c.stage, "setting": c.setting, "value": c.value,
                                 "relative_ms_per_mflop": c.relative} for c in reduction.dropped],
                    "old_latency_ms": list(reduction.old_range_ms), "new_latency_ms": list(reduction.new_range_ms)})
        return
    _show(reduction, source.name, ratio)
    out.print(f"wrote {path}: anas train --space {path}")


def _show(reduction: Reduction, source: str, ratio: float) -> None:
    if reduction.dropped:
        table = Table(title=f"dropped from {source} (ms per MFLOP above {ratio:g} x the stage's median)")
        for column in ("stage", "setting", "choice", "ms per MFLOP / stage median"):
            table.add_column(column, justify="right")
        for choice in reduction.dropped:
            table.add_row(choice.stage, choice.setting, f"{choice.value:g}", f"{choice.relative:.2f}")
        out.print(table)
    else:
        out.print(f"nothing dropped: no choice of {source} is above {ratio:g} x its stage's median ms per MFLOP")
    (old_low, old_high), (new_low, new_high) = reduction.old_range_ms, reduction.new_range_ms
    out.print(f"predicted latency: {source} {old_low:.3f}-{old_high:.3f} ms, "
              f"{reduction.space.name} {new_low:.3f}-{new_high:.3f} ms")
