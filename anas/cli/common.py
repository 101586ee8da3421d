"""Pieces shared by the commands: consoles, the output options and JSON output."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from anas.io import json_text
from anas.options import option

# Human-readable results on stdout; progress and status on stderr so `--json` stays clean.
out = Console()
err = Console(stderr=True)


@dataclass(frozen=True, kw_only=True)
class Report:
    """How a command reports: a table for people, or JSON (``--json``)."""

    json_output: bool = option(False, "Print the results as one JSON object (machine-readable).", flag="--json")


@dataclass(frozen=True, kw_only=True)
class ReportWithProgress(Report):
    """How a command that runs a while reports: with a progress display, unless ``--quiet``."""

    quiet: bool = option(False, "No progress display.", short="-q")

    @property
    def progress(self) -> bool:
        """Whether to show progress: not with ``--quiet`` or ``--json``, nor on the ranks
        other than 0 of a ``torchrun`` job."""
        return not (self.quiet or self.json_output) and is_main_process()


def print_json(data: Any) -> None:
    """Strict JSON on stdout (non-finite numbers as null)."""
    print(json_text(data), end="")


def is_main_process() -> bool:
    """False on the ranks other than 0 of a ``torchrun`` job (which report nothing)."""
    return os.environ.get("RANK", "0") == "0"


def use_table_threads(path: str) -> None:
    """Time on the CPU with the PyTorch threads a latency table was measured with (the
    thread count is process-wide state, which only the command line sets)."""
    import torch

    from anas.latency.lookup_table import read_latency_table

    threads = read_latency_table(path).config.threads
    if threads is not None:
        torch.set_num_threads(threads)
