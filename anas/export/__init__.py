"""Shipping subnets: ONNX, TorchScript or a plain PyTorch file, verified against PyTorch."""

from anas.export.pt import load_subnet
from anas.export.subnet import ExportConfig, ExportResult, export_subnet

__all__ = ["ExportConfig", "ExportResult", "export_subnet", "load_subnet"]
