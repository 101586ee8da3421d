"""The ``--device`` option of every command: ``cpu``, ``cuda`` or ``cuda:N`` (and
``auto`` where a command allows it: CUDA when present)."""

from __future__ import annotations

import re

import torch

from anas.errors import AnasError


def check_device_name(name: str, allow_auto: bool = False) -> None:
    """Refuse a name that is no device, without looking at the machine."""
    if not (allow_auto and name == "auto") and not re.fullmatch(r"cpu|cuda(:\d+)?", str(name)):
        raise AnasError(f"unknown --device {name!r}: use {'auto, ' if allow_auto else ''}cpu or cuda[:N]")


def resolve_device(name: str, allow_auto: bool = False) -> torch.device:
    """The torch device ``name`` names; CUDA must be present when it is asked for."""
    check_device_name(name, allow_auto)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AnasError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)
