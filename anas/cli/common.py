"""Pieces shared by the commands: consoles and JSON output."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

# Human-readable results on stdout; progress and status on stderr so `--json` stays clean.
out = Console()
err = Console(stderr=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
