"""Pieces shared by the commands: consoles and JSON output."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console

from anas.evaluate.trained import DATA_DIR_HELP
from anas.io import json_text

# Human-readable results on stdout; progress and status on stderr so `--json` stays clean.
out = Console()
err = Console(stderr=True)


DATA_DIR_OPTION = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)


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

    from anas.latency.table import read_latency_table

    threads = read_latency_table(path).config.threads
    if threads is not None:
        torch.set_num_threads(threads)
