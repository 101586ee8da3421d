"""ONNX: written by torch's ``torch.export``-based exporter, run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anas.errors import AnasError, one_line
from anas.export.io import INPUT_NAME, OUTPUT_NAME, Forward, example_input
from anas.io import json_text
from anas.nn.static import StaticNet

DEFAULT_OPSET = 18  # the oldest opset torch's exporter implements natively
MIN_OPSET = 18


def check_opset(opset: int) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise AnasError(f"--opset {opset} is not supported (allowed: {MIN_OPSET} to {newest})")


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
