"""Static int8 quantization of an ONNX export with onnxruntime, and what it costs and gains.

``anas export --to onnx --quantize int8`` writes the fp32 ONNX file as every ONNX export
does (to a temporary folder), quantizes it into the output file with onnxruntime's
``quantize_static``, and compares the int8 file with the PyTorch subnet.

The settings (chosen by measurement on the ``tiny`` space; docs/export.md has the figures):

- ``quant_pre_process`` first: shape inference and onnxruntime's basic, hardware-independent
  graph optimizations, as onnxruntime recommends before quantizing. It also drops the
  exporter's per-node debug metadata (a fifth of a small fp32 file).
- QDQ format: ``QuantizeLinear``/``DequantizeLinear`` pairs around standard operators, a
  plain ONNX file that any runtime can run; onnxruntime fuses the pairs into integer
  kernels (``QLinearConv``, ``QGemm``, ``QLinearMul``, ...) when it loads the file.
- uint8 activations and int8 weights ("U8S8"), one scale per tensor: onnxruntime's fast
  path on x86. With int8 activations onnxruntime left most convolutions in float (between
  dequantize and quantize nodes) and the tiny networks ran 5x slower; one scale per output
  channel made the file 16% larger for no accuracy gain.
- MinMax calibration: the activation ranges seen on ``CALIB_IMAGES`` training images of the
  run (its calibration batches, the same every time), resized to the subnet's resolution.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anas.errors import AnasError, one_line
from anas.export.formats import ExportFailed
from anas.export.interface import INPUT_NAME, OUTPUT_NAME, Forward
from anas.nn.accuracy import at_resolution

QUANTIZE_CHOICES = ("int8",)
CALIB_IMAGES = 256  # training images whose activation ranges set the int8 scales
CALIB_CHUNK = 16  # images per calibration run of onnxruntime (which keeps each tensor's min and max per run)
MIN_TOP1_AGREEMENT = 0.5  # below this fraction of verification images, the int8 file is refused
LATENCY_WARMUP, LATENCY_RUNS = 5, 30  # batch-1 runs before and in the median


class Int8Error(ExportFailed):
    """The int8 model could not be made or loaded: a failed export (exit 1), not bad input."""


@dataclass(frozen=True)
class Int8Report:
    """What quantization did: the calibration, the two file sizes and, when verified, the
    validation accuracy of the PyTorch subnet and of the int8 file and their latencies."""

    calib_images: int
    bytes_fp32: int
    bytes_int8: int
    acc1_fp32: float | None = None  # percent, over the whole validation split
    acc1_int8: float | None = None
    val_images: int = 0
    latency_fp32_ms: float | None = None  # onnxruntime, CPU, batch 1, one thread, median
    latency_int8_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "quant_calib_images": self.calib_images,
            "acc1_fp32": self.acc1_fp32,
            "acc1_int8": self.acc1_int8,
            "val_images": self.val_images,
            "bytes": {"fp32": self.bytes_fp32, "int8": self.bytes_int8},
            "latency_ms": None if self.latency_int8_ms is None else {"fp32": self.latency_fp32_ms,
                                                                     "int8": self.latency_int8_ms},
        }


def quantization_metadata(calib_images: int) -> dict[str, Any]:
    """The ``quantization`` entry of the int8 file's metadata."""
    return {"type": "int8", "format": "QDQ", "weights": "int8, symmetric, one scale per tensor",
            "activations": "uint8, one scale per tensor", "calibration": "MinMax",
            "calibration_images": calib_images}


# ----------------------------------------------------------------------------------------
# Calibration and quantization
# ----------------------------------------------------------------------------------------


def calibration_inputs(batches: Iterable, resolution: int, count: int) -> list[np.ndarray]:
    """The first ``count`` images of ``batches`` (fewer if there are fewer) at ``resolution``,
    as float32 arrays of at most ``CALIB_CHUNK`` images. Torch's RNG is forked and seeded
    while they are drawn (training batches are augmented), so they are the same every time."""
    chunks, seen = [], 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for images, _ in at_resolution(batches, resolution):
            taken = images[: count - seen].float().cpu()
            chunks.extend(chunk.numpy() for chunk in taken.split(CALIB_CHUNK))
            seen += len(taken)
            if seen >= count:
                break
    if not chunks:
        raise AnasError("the run has no training images to calibrate the int8 quantization with")
    return chunks


def calibration_reader(chunks: list[np.ndarray]):
    """An onnxruntime ``CalibrationDataReader`` that feeds ``chunks`` once, in order."""
    from onnxruntime.quantization import CalibrationDataReader

    class ChunkReader(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(chunks)

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.remaining, None)
            return None if chunk is None else {INPUT_NAME: chunk}

    return ChunkReader()


def quantize_onnx(fp32: Path, out: Path, chunks: list[np.ndarray]) -> None:
    """Quantize the fp32 ONNX file ``fp32`` into ``out`` (QDQ, uint8 activations, int8
    weights, MinMax ranges over ``chunks``); its metadata is kept. Any failure of
    onnxruntime's tools is an ``Int8Error``."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory(prefix="anas-int8-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32), str(prepared))
            quantize_static(str(prepared), str(out), calibration_reader(chunks), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False,
                            calibrate_method=CalibrationMethod.MinMax)
            onnx.checker.check_model(str(out), full_check=True)
        except Exception as exc:  # onnxruntime and onnx raise many types
            raise Int8Error(f"onnxruntime {ort.__version__} could not quantize the model: {one_line(exc)}") from None


# ----------------------------------------------------------------------------------------
# Running and measuring the files
# ----------------------------------------------------------------------------------------


def load_session(path: Path, threads: int = 0, what: str = "the int8 model"):
    """An onnxruntime CPU session on ``path`` (``threads`` 0: onnxruntime's default); a file
    that does not load is an ``Int8Error`` that calls it ``what``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise Int8Error(f"onnxruntime {ort.__version__} cannot load {what}: {one_line(exc)}") from None


def session_forward(session) -> Forward:
    """A session as a function from a batch of images to logits."""
    return lambda images: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])


@torch.no_grad()
def top1_accuracies(reference: torch.nn.Module, quantized: Forward, batches: Iterable) -> tuple[float, float, int]:
    """Top-1 accuracy (percent) of ``reference`` and of ``quantized`` over all ``batches``
    of ``(images, labels)``, and the number of images."""
    hits_reference = hits_quantized = images_seen = 0
    for images, labels in batches:
        images = images.float().cpu()
        hits_reference += int((reference(images).argmax(1) == labels).sum())
        hits_quantized += int((quantized(images).argmax(1) == labels).sum())
        images_seen += len(labels)
    if images_seen == 0:
        raise AnasError("the run has no validation images to measure the int8 accuracy on")
    return 100.0 * hits_reference / images_seen, 100.0 * hits_quantized / images_seen, images_seen


def latency_ms(path: Path, image: torch.Tensor, runs: int = LATENCY_RUNS) -> float:
    """Median time of one onnxruntime run of ``path`` on ``image`` (a batch of one), on one
    CPU thread, after ``LATENCY_WARMUP`` runs; milliseconds."""
    session = load_session(path, threads=1, what=path.name)
    feed = {INPUT_NAME: image.numpy()}
    for _ in range(LATENCY_WARMUP):
        session.run([OUTPUT_NAME], feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def measure(reference: torch.nn.Module, fp32: Path, int8: Path, val_batches: Iterable, image: torch.Tensor,
            calib_images: int) -> Int8Report:
    """Validation accuracy of the PyTorch subnet and of the int8 file over the whole split
    (resized to the side of ``image``), the sizes of both ONNX files and their latencies on
    ``image`` (a batch of one)."""
    quantized = session_forward(load_session(int8))
    resolution = image.shape[-1]
    acc_fp32, acc_int8, count = top1_accuracies(reference, quantized, at_resolution(val_batches, resolution))
    return Int8Report(calib_images, fp32.stat().st_size, int8.stat().st_size, acc_fp32, acc_int8, count,
                      latency_ms(fp32, image), latency_ms(int8, image))
