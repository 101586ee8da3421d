"""TorchScript: a traced module, loadable with ``torch.jit.load`` without anas."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from anas.export.formats import ExportFormat, register_export_format
from anas.export.interface import Forward, example_input
from anas.io import json_text
from anas.nn.static import StaticNet


@contextmanager
def quiet_torch():
    """Hide torch's deprecation warnings for TorchScript (every jit call warns)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def write_torchscript(net: StaticNet, path: Path, metadata: dict[str, Any]) -> None:
    """A traced module; ``metadata`` rides along as the extra file ``anas.json``."""
    with quiet_torch(), torch.no_grad():
        traced = torch.jit.trace(net, example_input(net))
        torch.jit.save(traced, str(path), _extra_files={"anas.json": json_text(metadata)})


def load_torchscript(path: Path) -> Forward:
    with quiet_torch():
        return torch.jit.load(str(path), map_location="cpu")


@register_export_format("torchscript")
class TorchScriptFormat(ExportFormat):
    extension = "ts"

    def write(self, net: StaticNet, path: Path, metadata: dict[str, Any], options: Any) -> None:
        write_torchscript(net, path, metadata)

    def load(self, path: Path) -> Forward:
        return load_torchscript(path)
