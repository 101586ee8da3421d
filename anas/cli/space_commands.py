"""``anas space``: commands that make new search spaces (``reduce``: hardware-aware;
``evolve``: AutoSpace) and show how one differs from another (``show``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer
from rich.table import Table

from anas.autospace.evolve import EvolveConfig, ShowOptions, evolve_space, spaces_to_compare
from anas.cli import app
from anas.cli.common import Report, ReportWithProgress, out, print_json
from anas.cli.flags import options_command
from anas.latency.reduce import ReduceOptions, Reduction, reduce_to_file
from anas.options import build, option, values_from_config
from anas.space.compare import space_changes
from anas.space.cost import mflops_range
from anas.space.search_space import SearchSpace

space_app = typer.Typer(help="Make new search spaces.", no_args_is_help=True)
app.add_typer(space_app, name="space")


@space_app.command("reduce")
@options_command(ReduceOptions, Report)
def reduce_command(values: dict[str, Any], cli: Report, config: str | None) -> None:
    """Drop the kernel / expand / width choices that are slow on the table's device for their MFLOPs."""
    options = build(ReduceOptions, values_from_config(ReduceOptions, values, config))
    written = reduce_to_file(options)
    reduction, source, table, path, ratio = written.reduction, written.source, written.table, written.path, options.ratio
    if cli.json_output:
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


@dataclass(frozen=True, kw_only=True)
class EvolveCommand(ReportWithProgress):
    """The options of ``anas space evolve`` that say where it works, not how it evolves."""

    folder: str | None = option(None, "Folder of the evolution (state.json, evolution.csv); an interrupted one "
                                      "resumes there.", flag="--dir", default_text="runs/evolve-SPACE-DATA-seedN")
    out: str | None = option(None, "YAML file of the evolved space.", short="-o", default_text="DIR/NAME.yaml")
    fresh: bool = option(False, "Start over, replacing the evolution in --dir.")


@space_app.command("evolve")
@options_command(EvolveConfig, EvolveCommand)
def evolve_command(values: dict[str, Any], cli: EvolveCommand, config: str | None) -> None:
    """Evolve a search space from the data (AutoSpace): per stage, the fittest candidate blocks."""
    summary = evolve_space(values_from_config(EvolveConfig, values, config), cli.folder, cli.out, fresh=cli.fresh,
                           progress=cli.progress)
    if summary is None:  # not the main process of a distributed run
        return
    if cli.json_output:
        print_json(summary.to_dict())
        return
    _show_changes(summary.source, summary.evolved.space)
    for line in summary.evolved.trimmed:
        out.print(f"dropped for --max-flops: {line}")
    out.print(f"wrote {summary.path} and {summary.folder}/evolution.csv: anas train --space {summary.path}")


@space_app.command("show")
@options_command(ShowOptions, Report)
def show_command(values: dict[str, Any], cli: Report, config: str | None) -> None:
    """Show how a space differs from the one it was made from (per-stage choices, MFLOPs range)."""
    new, old = spaces_to_compare(build(ShowOptions, values_from_config(ShowOptions, values, config)))
    json_output = cli.json_output
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
