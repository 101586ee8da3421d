"""Latency measurement of a network on a device: median of timed runs after warm-up."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from anas.errors import AnasError


@dataclass(frozen=True)
class LatencyConfig:
    device: str = "cpu"
    batch_size: int = 1
    warmup: int = 10
    runs: int = 50


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda`` (optionally ``cuda:N``); CUDA must be present."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise AnasError(f"device {name}: CUDA is not available on this machine")
        return torch.device(name)
    raise AnasError(f"unknown device {name!r}: use cpu or cuda")


def measure_latency(model: nn.Module, resolution: int, config: LatencyConfig, in_channels: int = 3) -> float:
    """Median forward time in milliseconds of ``model`` in eval mode on a random batch."""
    if config.batch_size < 1 or config.runs < 1 or config.warmup < 0:
        raise AnasError("latency needs --batch-size >= 1, runs >= 1 and warmup >= 0")
    device = resolve_device(config.device)
    model = model.to(device).eval()
    x = torch.randn(config.batch_size, in_channels, resolution, resolution, device=device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(config.warmup):
            model(x)
        synchronize()
        for _ in range(config.runs):
            start = time.perf_counter()
            model(x)
            synchronize()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0
