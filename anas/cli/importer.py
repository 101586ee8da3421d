"""``anas import``: the published AttentiveNAS / AlphaNet supernet as an anas run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from anas.cli import app
from anas.cli.common import out, print_json
from anas.train.published import PUBLISHED_CLASSES, PUBLISHED_SPACE, SOURCES, UNUSED_KINDS, import_published


@app.command("import")
def import_command(
    checkpoint: Path = typer.Argument(..., help="The authors' checkpoint file (e.g. attentive_nas_pretrained.pth.tar)."),
    source: str = typer.Option(..., "--from", help=f"Whose supernet: {' | '.join(SOURCES)}."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder to write (default: runs/<from>-imported)."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="ImageNet folder (train/ and val/) for BN recalibration and evaluation."),
    space: str = typer.Option(PUBLISHED_SPACE, "--space", "-s", help="Space of the supernet (the published ones are attentive-nas)."),
    num_classes: int = typer.Option(PUBLISHED_CLASSES, "--num-classes", min=1, help="Classes of the classifier (the published ones: 1000)."),
    json_output: bool = typer.Option(False, "--json", help="Print what was imported as one JSON object."),
) -> None:
    """Import a published AttentiveNAS or AlphaNet supernet into a run folder, never running code from the file."""
    out_path = out_dir or Path("runs") / f"{source}-imported"
    report = import_published(source, checkpoint, out_path, space, num_classes, data_dir)
    if json_output:
        print_json(report.to_dict())
        return
    table = Table(title=f"imported {SOURCES[report.source]}", show_header=False)
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
