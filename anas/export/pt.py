"""A plain PyTorch file: tensors and plain data (``torch.load(weights_only=True)`` reads
it), rebuilt into the static network by :func:`load_subnet`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anas.errors import AnasError, CheckpointError, one_line
from anas.export.formats import ExportFormat, register_export_format
from anas.export.interface import Forward
from anas.nn.static import StaticNet
from anas.runtime.rundir import safe_torch_load
from anas.space.arch import arch_from_dict
from anas.space.schema import space_from_dict

SUBNET_FORMAT = "anas-subnet-1"  # the format tag of `pt` files


def write_pt(net: StaticNet, path: Path, metadata: dict[str, Any]) -> None:
    """``torch.save`` of plain data and tensors only (``load_subnet`` reads it back)."""
    state = {key: tensor.detach().cpu().clone() for key, tensor in net.state_dict().items()}
    torch.save({"format": SUBNET_FORMAT, **metadata, "state_dict": state}, str(path))


def load_subnet(path: str | Path) -> StaticNet:
    """Rebuild the static network of a ``pt`` export (``torch.load(weights_only=True)``): in
    eval mode, on the CPU, with ``mean``, ``std`` and ``class_names`` as attributes. Any
    other file is a one-line ``CheckpointError``."""
    path = Path(path)
    data = safe_torch_load(path, "subnet file")
    if not isinstance(data, dict) or data.get("format") != SUBNET_FORMAT:
        raise CheckpointError(f"{path} is not an anas subnet file (anas export --to pt)")
    try:
        space = space_from_dict(data["space"], f"{path} (space)")
        net = StaticNet(space, arch_from_dict(space, data["arch"]), int(data["num_classes"]))
        net.load_state_dict(data["state_dict"])
    except (AnasError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"subnet file {path} is inconsistent: {one_line(exc)}") from None
    net.mean, net.std, net.class_names = data.get("mean"), data.get("std"), data.get("class_names")
    return net.eval()


@register_export_format("pt")
class PlainPyTorchFormat(ExportFormat):
    extension = "pt"

    def write(self, net: StaticNet, path: Path, metadata: dict[str, Any], options: Any) -> None:
        write_pt(net, path, metadata)

    def load(self, path: Path) -> Forward:
        return load_subnet(path)
