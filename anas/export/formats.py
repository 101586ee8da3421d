"""Export formats by name (``anas export --to``): ONNX, TorchScript and a plain PyTorch file.

A format is a class registered with :func:`register_export_format` (with the dataclass of
its own options, if it has any: ONNX's ``--opset`` and ``--quantize``). It writes a static
network to a file (``write``) and loads the file back as a function from images to logits
(``load``); :meth:`ExportFormat.export` does both and checks the file against PyTorch on
real images. A format that checks its files otherwise (int8 ONNX: agreement of the top-1
class instead of a tolerance on the logits) overrides ``export``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anas.errors import AnasError
from anas.export.interface import Forward
from anas.nn.static import StaticNet
from anas.registry import Registry

EXPORT_FORMATS: Registry = Registry("export format")
register_export_format = EXPORT_FORMATS.register


class ExportFailed(AnasError):
    """The file could not be made or loaded: a failed export (exit 1), not bad input."""


@dataclass(frozen=True)
class Verification:
    max_abs_diff: float
    top1_agree: bool  # every image has the same top-1 class
    images: int
    tolerance: float | None  # None: the logits are not checked (int8)
    top1_agreement: float = 1.0  # the fraction of images with the same top-1 class
    min_agreement: float | None = None  # the least top1_agreement accepted (int8); None: any

    @property
    def ok(self) -> bool:
        return ((self.tolerance is None or self.max_abs_diff <= self.tolerance)
                and (self.min_agreement is None or self.top1_agreement >= self.min_agreement))


@torch.no_grad()
def verify(exported: Forward, reference: StaticNet, images: torch.Tensor, tolerance: float | None = 1e-4,
           min_agreement: float | None = None) -> Verification:
    """Largest absolute difference of the logits and top-1 agreement of the exported model
    and the PyTorch subnet on ``images``; it passes when the difference is at most
    ``tolerance`` and the fraction of images that agree at least ``min_agreement`` (None:
    that check is off)."""
    expected = reference(images).float()
    got = torch.as_tensor(exported(images)).float()
    if got.shape != expected.shape:
        raise AnasError(f"the exported model gives logits of shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    diff = float((got - expected).abs().max())
    same = got.argmax(1) == expected.argmax(1)
    return Verification(diff if math.isfinite(diff) else float("inf"), bool(same.all()), len(images), tolerance,
                        float(same.float().mean()), min_agreement)


@dataclass
class ExportJob:
    """What a format exports: the network (eval mode, on the CPU), the metadata that rides
    along, the format's options, and the data a check may need."""

    net: StaticNet
    metadata: dict[str, Any]
    options: Any  # the format's own
    images: torch.Tensor | None  # validation images the file is checked on (None: not checked)
    tolerance: float  # the largest difference of the logits a check accepts
    calibration_batches: Callable[[], Iterable]  # the run's training batches (e.g. int8 calibration)
    validation_batches: Callable[[], Iterable]  # the run's validation batches (e.g. int8 accuracy)


@dataclass
class Exported:
    verification: Verification | None  # None: not checked
    report: Any = None  # what else the format measured (int8: sizes, accuracy, latency)


class ExportFormat:
    """Base of every format."""

    extension: str = ""

    def variant(self, options: Any) -> str | None:
        """What the options make of the format, named in the default file name (``int8``)."""
        return None

    def opset(self, options: Any) -> int | None:
        """The ONNX opset the file holds (None for other formats)."""
        return None

    def write(self, net: StaticNet, path: Path, metadata: dict[str, Any], options: Any) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> Forward:
        raise NotImplementedError

    def export(self, job: ExportJob, path: Path) -> Exported:
        """Write the file; with verification images, load it back and compare its logits
        with PyTorch's."""
        self.write(job.net, path, job.metadata, job.options)
        if job.images is None:
            return Exported(None)
        return Exported(verify(self.load(path), job.net, job.images, job.tolerance))
