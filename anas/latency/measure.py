"""Latency measurement of a network on a device: median of timed runs after warm-up.

Three devices: ``cpu`` and ``cuda`` run the module in PyTorch; ``ort-cpu`` exports it to
ONNX (torch's ``torch.export``-based exporter, as ``anas export`` does) and times
onnxruntime's CPU session, where ``threads`` sets its intra-op threads. PyTorch's own
thread count is process-wide state: the command line sets it (``--threads``), never this
module.
"""

from __future__ import annotations

import io
import re
import statistics
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass

import torch
from torch import nn

from anas.errors import AnasError, one_line
from anas.nn.static import StaticNet
from anas.runtime.device import resolve_device
from anas.space.arch import Arch
from anas.space.search_space import SearchSpace

ORT_CPU = "ort-cpu"
LATENCY_DEVICES_TEXT = "auto, cpu, cuda[:N] or ort-cpu (onnxruntime on the CPU)"


@dataclass(frozen=True)
class LatencyConfig:
    device: str = "cpu"  # cpu, cuda[:N] or ort-cpu
    batch_size: int = 1
    warmup: int = 10
    runs: int = 50
    threads: int | None = None  # onnxruntime's intra-op threads (ort-cpu); None: its default


def check_latency_device(device: str) -> None:
    """Refuse a name that is no latency device, without looking at the machine."""
    if device != ORT_CPU and not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise AnasError(f"unknown --device {device!r} for latency: use {LATENCY_DEVICES_TEXT}")


def latency_device(device: str) -> str:
    """The latency device ``--device`` names; ``auto``: CUDA when present, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_latency_device(device)
    return device


def torch_device_of(device: str) -> torch.device:
    """The PyTorch device behind a latency device: ``ort-cpu`` runs on the CPU."""
    return resolve_device("cpu" if device == ORT_CPU else device)


def measure_latency(model: nn.Module, resolution: int, config: LatencyConfig, in_channels: int = 3) -> float:
    """Median forward time in milliseconds of ``model`` in eval mode on a random batch of
    ``in_channels`` x ``resolution`` x ``resolution`` inputs."""
    if config.batch_size < 1 or config.runs < 1 or config.warmup < 0:
        raise AnasError("latency needs --batch-size >= 1, runs >= 1 and warmup >= 0")
    device = torch_device_of(config.device)
    model = model.to(device).eval()
    x = torch.randn(config.batch_size, in_channels, resolution, resolution, device=device)
    if config.device == ORT_CPU:
        forward, synchronize = _onnxruntime_forward(model, x, config.threads), (lambda: None)
    else:
        forward = lambda: model(x)  # noqa: E731
        synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(config.warmup):
            forward()
        synchronize()
        for _ in range(config.runs):
            start = time.perf_counter()
            forward()
            synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def _onnxruntime_forward(model: nn.Module, x: torch.Tensor, threads: int | None) -> Callable[[], object]:
    """``model`` exported to ONNX in memory and loaded in an onnxruntime CPU session; the
    returned function runs it on ``x``."""
    import onnxruntime as ort

    try:
        with redirect_stdout(io.StringIO()):  # the exporter reports its passes on stdout
            program = torch.onnx.export(model, (x,), input_names=["input"], output_names=["output"],
                                        opset_version=18, dynamo=True, verbose=False)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        if threads is not None:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(program.model_proto.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # the exporter and onnxruntime raise their own exception types
        raise AnasError(f"cannot time {type(model).__name__} in onnxruntime {ort.__version__}: {one_line(exc)}") from None
    feed = {"input": x.cpu().numpy()}
    return lambda: session.run(None, feed)


def subnet_latency(space: SearchSpace, arch: Arch, config: LatencyConfig, num_classes: int | None = None) -> float:
    """Median forward time in milliseconds of the static network of ``arch``."""
    return measure_latency(StaticNet(space, arch, num_classes), arch.resolution, config, space.in_channels)


class LatencyCache:
    """Latency of the static networks of subnets on one device, each measured once."""

    def __init__(self, space: SearchSpace, config: LatencyConfig, num_classes: int | None = None):
        self.space, self.config, self.num_classes = space, config, num_classes
        self.measured: dict[Arch, float] = {}

    def __call__(self, arch: Arch) -> float:
        if arch not in self.measured:
            self.measured[arch] = subnet_latency(self.space, arch, self.config, self.num_classes)
        return self.measured[arch]
