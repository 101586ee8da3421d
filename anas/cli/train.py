"""``anas train``: train a supernet (sandwich rule, in-place distillation, attentive sampling)."""

from __future__ import annotations

from typing import Any, Optional

import typer
from rich.table import Table

from anas.cli import allocator, app
from anas.cli.common import err, out, print_json
from anas.cli.options import with_config_options
from anas.train.config import TrainConfig
from anas.train.loop import TrainSummary, resume_training, start_training


@app.command()
@with_config_options(TrainConfig)
def train(
    options: dict[str, Any],
    config: Optional[str] = typer.Option(None, "--config", help="YAML file of options; flags override it."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the run in this folder from its last checkpoint."),
    keep_freed_memory: bool = typer.Option(True, "--keep-freed-memory/--no-keep-freed-memory",
                                           help="Have glibc's malloc keep freed memory for the next step (faster CPU "
                                                "steps; the process keeps its peak memory). A setting of this process, "
                                                "noted in train.log."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    json_output: bool = typer.Option(False, "--json", help="Print the final summary as one JSON object."),
) -> None:
    """Train a supernet with the sandwich rule, in-place distillation and attentive sampling."""
    progress = not (quiet or json_output)
    notes = ("malloc keeps freed memory",) if keep_freed_memory and allocator.keep_freed_memory() else ()
    if resume is not None:
        if config is not None:
            err.print("note: --config is ignored with --resume (the run keeps its configuration)")
        summary = resume_training(resume, options, progress=progress, process_notes=notes)
    else:
        summary = start_training(options, config, progress=progress, process_notes=notes)
    _report(summary, json_output)


def _report(summary: TrainSummary | None, json_output: bool) -> None:
    if summary is None:  # not the main process of a distributed run
        return
    if json_output:
        print_json(summary.to_dict())
        return
    table = Table(title=f"validation accuracy after {summary.epochs} epochs (BN recalibrated)")
    for column in ("subnet", "MFLOPs", "params (M)", "top-1 (%)", "top-5 (%)", "loss"):
        table.add_column(column, justify="left" if column == "subnet" else "right")
    for name in ("smallest", "largest"):
        row = getattr(summary, name)
        table.add_row(name, f"{row['mflops']:.2f}", f"{row['params_m']:.3f}", f"{row['acc1']:.2f}",
                      f"{row['acc5']:.2f}", f"{row['loss']:.3f}")
    out.print(table)
    out.print(f"run written to {summary.run_dir} ({summary.seconds:.0f} s, {summary.images_per_second:,.0f} images/s)")
