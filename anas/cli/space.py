"""``anas space``: commands that make new search spaces (``reduce``: hardware-aware;
``evolve``: AutoSpace) and show how one differs from another (``show``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import out, print_json
from anas.cli.options import with_config_options
from anas.latency.reduce import Reduction, reduce_space
from anas.latency.table import read_latency_table
from anas.space.compare import space_changes
from anas.space.cost import mflops_range
from anas.space.schema import load_space, write_space
from anas.space.space import SearchSpace
from anas.train.autospace import EvolveConfig, evolution_source, evolve_space

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


@space_app.command("evolve")
@with_config_options(EvolveConfig)
def evolve_command(
    options: dict[str, Any],
    folder: Optional[Path] = typer.Option(None, "--dir", help="Folder of the evolution (state.json, evolution.csv); "
                                          "an interrupted one resumes there. Default: runs/evolve-SPACE-DATA-seedN."),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="YAML file of the evolved space "
                                            "(default: DIR/NAME.yaml)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start over, replacing the evolution in --dir."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_output: bool = typer.Option(False, "--json", help="Print the evolved space's summary as one JSON object."),
) -> None:
    """Evolve a search space from the data (AutoSpace): per stage, the fittest candidate blocks."""
    summary = evolve_space(options, folder, out_path, fresh=fresh, progress=not (quiet or json_output))
    if summary is None:  # not the main process of a distributed run
        return
    if json_output:
        print_json(summary.to_dict())
        return
    _show_changes(summary.source, summary.evolved.space)
    for line in summary.evolved.trimmed:
        out.print(f"dropped for --max-flops: {line}")
    out.print(f"wrote {summary.path} and {summary.folder}/evolution.csv: anas train --space {summary.path}")


@space_app.command("show")
def show_command(
    space: str = typer.Argument(..., help="Space to show: built-in name or YAML file."),
    against: Optional[str] = typer.Option(None, "--against", help="Space to compare with (default: the space an "
                                          "evolution in the file's folder started from)."),
    json_output: bool = typer.Option(False, "--json", help="Print the changes and MFLOPs ranges as one JSON object."),
) -> None:
    """Show how a space differs from the one it was made from (per-stage choices, MFLOPs range)."""
    new = load_space(space)
    old = load_space(against) if against is not None else evolution_source(Path(space))
    if old is None:
        low, high = mflops_range(new)
        if json_output:
            print_json({"space": new.name, "mflops": [low, high], "against": None, "changes": []})
            return
        out.print(f"{new.name}: {new.num_stages} stages, subnets of {low:.3f}-{high:.3f} MFLOPs "
                  f"(pass --against SPACE to compare)")
        return
    if json_output:
        print_json({"space": new.name, "mflops": list(mflops_range(new)), "against": old.name,
                    "against_mflops": list(mflops_range(old)),
                    "changes": [vars(c) for c in space_changes(old, new)]})
        return
    _show_changes(old, new)


def _show_changes(old: SearchSpace, new: SearchSpace) -> None:
    changes = space_changes(old, new)
    if changes:
        table = Table(title=f"{new.name} against {old.name}")
        for column in ("where", "setting", old.name, new.name):
            table.add_column(column)
        for change in changes:
            table.add_row(change.where, change.setting, change.old, change.new)
        out.print(table)
    else:
        out.print(f"{new.name} has the same choices as {old.name}")
    (old_low, old_high), (new_low, new_high) = mflops_range(old), mflops_range(new)
    out.print(f"MFLOPs: {old.name} {old_low:.3f}-{old_high:.3f}, {new.name} {new_low:.3f}-{new_high:.3f}")
