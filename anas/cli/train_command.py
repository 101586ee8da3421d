"""``anas train``: train a supernet (sandwich rule, in-place distillation, attentive sampling)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from anas.cli import app
from anas.cli.common import ReportWithProgress, err, out, print_json
from anas.cli.flags import options_command
from anas.options import option
from anas.train.config import TrainConfig
from anas.train.loop import TrainSummary, resume_training, start_training


@dataclass(frozen=True, kw_only=True)
class TrainCommand(ReportWithProgress):
    """The options of ``anas train`` that are the command line's own, not the run's."""

    resume: str | None = option(None, "Continue the run in this folder from its last checkpoint.")


MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
"""glibc's settings of when malloc gives freed memory back (docs/train.md, "The memory
allocator"): read when the process starts, so they are set in the environment of ``anas
train``, and train.log notes them."""


def process_notes() -> tuple[str, ...]:
    """What train.log says of this process's settings: glibc's malloc variables, if set."""
    settings = [f"{name}={os.environ[name]}" for name in MALLOC_VARIABLES if name in os.environ]
    return (f"malloc {' '.join(settings)}",) if settings else ()


@app.command()
@options_command(TrainConfig, TrainCommand)
def train(values: dict[str, Any], cli: TrainCommand, config: str | None) -> None:
    """Train a supernet with the sandwich rule, in-place distillation and attentive sampling."""
    notes = process_notes()
    if cli.resume is not None:
        if config is not None:
            err.print("note: --config is ignored with --resume (the run keeps its configuration)")
        summary = resume_training(cli.resume, values, progress=cli.progress, process_notes=notes)
    else:
        summary = start_training(values, config, progress=cli.progress, process_notes=notes)
    _report(summary, cli.json_output)


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
