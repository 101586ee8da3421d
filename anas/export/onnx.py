"""ONNX: written by torch's ``torch.export``-based exporter, run by onnxruntime; optionally
quantized to int8 (:mod:`anas.export.quantize`)."""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import anas.export.quantize as quantization
from anas.errors import AnasError, one_line
from anas.export.formats import Exported, ExportFormat, ExportJob, register_export_format, verify
from anas.export.interface import INPUT_NAME, OUTPUT_NAME, Forward, example_input
from anas.io import json_text
from anas.nn.static import StaticNet
from anas.options import option

DEFAULT_OPSET = 18  # the oldest opset torch's exporter implements natively
MIN_OPSET = 18


def check_opset(opset: int, flag: str = "--opset") -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise AnasError(f"{flag} {opset} is not supported (allowed: {MIN_OPSET} to {newest})")


@dataclass(frozen=True, kw_only=True)
class OnnxOptions:
    opset: int | None = option(None, "ONNX opset.", default_text=str(DEFAULT_OPSET), check=check_opset)
    quantize: str | None = option(None, f"Static int8 quantization, calibrated on {quantization.CALIB_IMAGES} "
                                        f"training images; the int8 file must agree with PyTorch on the top-1 class "
                                        f"of at least {quantization.MIN_TOP1_AGREEMENT:.0%} of the verification "
                                        f"images.", choices=quantization.QUANTIZE_CHOICES)


def write_onnx(net: StaticNet, path: Path, metadata: dict[str, Any], opset: int = DEFAULT_OPSET) -> None:
    """ONNX through torch's ``torch.export``-based exporter: input ``input`` (NCHW float32),
    output ``logits``, a dynamic batch axis; ``metadata`` goes into ``metadata_props``
    (values that are not strings as JSON)."""
    import onnx

    batch = torch.export.Dim("batch")
    program = torch.onnx.export(net, (example_input(net),), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, verbose=False)
    model = program.model_proto
    produced = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if produced != opset:
        raise AnasError(f"the ONNX exporter could not produce opset {opset} (it gave {produced})")
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json_text(value)
    onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def load_onnx(path: Path) -> Forward:
    """An onnxruntime session on the CPU, as a function from images to logits."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise AnasError(f"onnxruntime {ort.__version__} cannot load the exported model "
                        f"(try another --opset): {one_line(exc)}") from None
    return lambda images: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])


@register_export_format("onnx", options=OnnxOptions)
class OnnxFormat(ExportFormat):
    """ONNX through torch's exporter; with ``--quantize int8``, the fp32 file quantized."""

    extension = "onnx"

    def variant(self, options: OnnxOptions) -> str | None:
        return options.quantize

    def opset(self, options: OnnxOptions) -> int:
        return options.opset or DEFAULT_OPSET

    def write(self, net: StaticNet, path: Path, metadata: dict[str, Any], options: OnnxOptions) -> None:
        if importlib.util.find_spec("onnxscript") is None:
            raise AnasError("ONNX export needs the onnxscript package: pip install onnxscript")
        write_onnx(net, path, metadata, self.opset(options))

    def load(self, path: Path) -> Forward:
        return load_onnx(path)

    def export(self, job: ExportJob, path: Path) -> Exported:
        if job.options.quantize is None:
            return super().export(job, path)
        return self.export_int8(job, path)

    def export_int8(self, job: ExportJob, path: Path) -> Exported:
        """Write the fp32 file to a temporary folder, quantize it into ``path`` and, with
        verification images, check the int8 file by top-1 agreement and measure both."""
        chunks = quantization.calibration_inputs(job.calibration_batches(), job.net.resolution,
                                                 quantization.CALIB_IMAGES)
        calibrated = sum(len(chunk) for chunk in chunks)
        metadata = {**job.metadata, "quantization": quantization.quantization_metadata(calibrated)}
        with tempfile.TemporaryDirectory(prefix="anas-export-") as folder:
            fp32 = Path(folder) / "fp32.onnx"
            self.write(job.net, fp32, metadata, job.options)
            quantization.quantize_onnx(fp32, path, chunks)
            if job.images is None:
                return Exported(None, quantization.Int8Report(calibrated, fp32.stat().st_size, path.stat().st_size))
            int8 = quantization.session_forward(quantization.load_session(path))
            check = verify(int8, job.net, job.images, None, quantization.MIN_TOP1_AGREEMENT)
            if not check.ok:
                return Exported(check)
            return Exported(check, quantization.measure(job.net, fp32, path, job.validation_batches(), job.images[:1],
                                                        calibrated))
