"""``anas import``: the published AttentiveNAS / AlphaNet supernet as an anas run folder."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from anas.cli import app
from anas.cli.common import Report, out, print_json
from anas.cli.flags import options_command
from anas.options import build, values_from_config
from anas.published.importer import IMPORT_SOURCES, UNUSED_KINDS, ImportOptions, import_published


@app.command("import")
@options_command(ImportOptions, Report)
def import_command(values: dict[str, Any], cli: Report, config: str | None) -> None:
    """Import a published AttentiveNAS or AlphaNet supernet into a run folder, never running code from the file."""
    report = import_published(build(ImportOptions, values_from_config(ImportOptions, values, config)))
    if cli.json_output:
        print_json(report.to_dict())
        return
    table = Table(title=f"imported {IMPORT_SOURCES.get(report.source)}", show_header=False)
    table.add_row("checkpoint", f"{report.checkpoint} (sha256 {report.sha256[:16]}...)")
    table.add_row("tensors loaded", str(report.tensors))
    for kind, count in report.unused.items():
        table.add_row("not loaded", f"{count} {UNUSED_KINDS[kind]}")
    if report.other_entries:
        table.add_row("training state skipped", ", ".join(report.other_entries))
    if report.stand_ins:
        table.add_row("objects read as inert placeholders", ", ".join(report.stand_ins))
    out.print(table)
    out.print(f"run written to {report.run_dir}")
