"""Latency measurement of a network on a device: median of timed runs after warm-up."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from anas.device import resolve_device
from anas.errors import AnasError
from anas.nn.static import StaticNet
from anas.space.arch import Arch
from anas.space.space import SearchSpace


@dataclass(frozen=True)
class LatencyConfig:
    device: str = "cpu"
    batch_size: int = 1
    warmup: int = 10
    runs: int = 50


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
