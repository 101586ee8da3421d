"""The ``--device`` option of every command: ``auto`` (CUDA when present; the default),
``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from anas.errors import AnasError
from anas.options import option


def check_device_name(name: str) -> None:
    """Refuse a name that is no device, without looking at the machine."""
    if name != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", str(name)):
        raise AnasError(f"unknown --device {name!r}: use auto, cpu or cuda[:N]")


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` names (``auto``: CUDA when present, else the CPU); CUDA
    must be present when it is asked for."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AnasError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def check_any_device(name: str, flag: str = "--device") -> None:
    """Refuse a name that no command takes as a device (``ort-cpu`` times latency only)."""
    if name not in ("auto", "ort-cpu") and not re.fullmatch(r"cpu|cuda(:\d+)?", str(name)):
        raise AnasError(f"unknown {flag} {name!r}: use auto, cpu or cuda[:N] (or ort-cpu to time latency)")


@dataclass(frozen=True, kw_only=True)
class DeviceOption:
    """``--device``, as every command that runs networks takes it."""

    device: str = option("auto", "Device: auto (CUDA when present, else the CPU), cpu or cuda[:N]; latency is "
                                 "also timed on ort-cpu (onnxruntime on the CPU).", check=check_any_device)
