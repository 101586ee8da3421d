"""Evaluating subnets honestly: BN statistics re-estimated before every measurement.

Running BN statistics of a weight-sharing supernet are not trusted: they mix many subnets.
Before a subnet is evaluated, its BN statistics are reset and re-estimated as a cumulative
average over a few training batches (``recalibrate_bn``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from anas.nn.static import resize
from anas.space.arch import Arch


@dataclass(frozen=True)
class EvalResult:
    acc1: float  # top-1 accuracy, percent
    acc5: float  # top-5 accuracy, percent
    loss: float  # mean cross-entropy
    images: int

    def to_dict(self) -> dict:
        return {"acc1": self.acc1, "acc5": self.acc5, "loss": self.loss, "images": self.images}


def _batchnorms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches: Iterable, num_batches: int, device: torch.device | str = "cpu") -> nn.Module:
    """Reset every BN layer's running statistics and re-estimate them as the cumulative
    average over ``num_batches`` batches of ``(images, labels)``; returns ``net`` in eval mode."""
    bns = _batchnorms(net)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    net.train()
    seen = 0
    for images, _ in islice(batches, num_batches):
        net(images.to(device, non_blocking=True))
        seen += 1
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    if seen == 0:
        raise ValueError("BN recalibration got no batches")
    return net.eval()


@torch.no_grad()
def evaluate(net: nn.Module, batches: Iterable, device: torch.device | str = "cpu",
             reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> EvalResult:
    """Top-1, top-5 and loss of ``net`` (in eval mode) over all ``batches``. ``reduce`` sums
    the tallies (top-1 hits, top-5 hits, summed loss, images) over the ranks of a job that
    each evaluated a shard (``evaluation_loader(..., rank, world_size)``)."""
    net.eval()
    tally = torch.zeros(4, dtype=torch.float64, device=device)
    for images, labels in batches:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        logits = net(images).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        tally[0] += hits[:, 0].sum()
        tally[1] += hits.any(dim=1).sum()
        tally[2] += F.cross_entropy(logits, labels, reduction="sum").double()
        tally[3] += labels.numel()
    if reduce is not None:
        tally = reduce(tally)
    correct1, correct5, loss_sum, count = tally.tolist()
    if count == 0:
        raise ValueError("evaluation got no batches")
    return EvalResult(100.0 * correct1 / count, 100.0 * correct5 / count, loss_sum / count, int(count))


def at_resolution(batches: Iterable, resolution: int):
    """``(images, labels)`` batches with the images resized to ``resolution`` (bilinear), as
    the supernet resizes its input for a subnet."""
    for images, labels in batches:
        yield resize(images, resolution), labels


def recalibrate_subnet(net: nn.Module, resolution: int, calib_batches: Iterable, num_calib: int,
                       device: torch.device | str = "cpu") -> nn.Module:
    """``recalibrate_bn`` on batches resized to the subnet's ``resolution``, with torch's RNG
    forked and seeded: the same statistics every time, the caller's random stream untouched."""
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        return recalibrate_bn(net, at_resolution(calib_batches, resolution), num_calib, device)


def evaluate_subnet(supernet, arch: Arch, calib_batches: Iterable, num_calib: int, val_batches: Iterable,
                    device: torch.device | str = "cpu",
                    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> EvalResult:
    """Extract ``arch`` from the supernet, recalibrate its BN, evaluate it, both on images at
    the subnet's resolution. The supernet's active subnet and mode are left as they were.
    Torch's RNG is forked, so evaluation never changes the training's random stream."""
    net = recalibrated_subnet(supernet, arch, calib_batches, num_calib, device)
    return evaluate(net, at_resolution(val_batches, arch.resolution), device, reduce)


def recalibrated_subnet(supernet, arch: Arch, calib_batches: Iterable, num_calib: int,
                        device: torch.device | str = "cpu") -> nn.Module:
    """The static network of ``arch`` with the supernet's weights and its BN statistics
    re-estimated (``recalibrate_subnet``), in eval mode; the supernet's active subnet and
    mode are left as they were."""
    previous, was_training = supernet.active_arch, supernet.training
    supernet.set_active(arch)
    net = supernet.get_active_subnet().to(device)
    supernet.set_active(previous)
    supernet.train(was_training)
    return recalibrate_subnet(net, arch.resolution, calib_batches, num_calib, device)
