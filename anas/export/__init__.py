"""Shipping subnets: ONNX, TorchScript or a plain PyTorch file, verified against PyTorch.
Importing this package registers the built-in formats (``onnx``, ``torchscript``, ``pt``)."""

from anas.export import onnx, torchscript, pt  # noqa: F401, I001  (register the built-ins, in this order)
from anas.export.formats import EXPORT_FORMATS, ExportFormat, register_export_format
from anas.export.pt import load_subnet
from anas.export.subnet import ExportOptions, ExportResult, export_subnet

__all__ = ["EXPORT_FORMATS", "ExportFormat", "ExportOptions", "ExportResult", "export_subnet", "load_subnet",
           "register_export_format"]
