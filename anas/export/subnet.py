"""Shipping a subnet: extract it from a trained run, recalibrate its BN statistics, export
it to ONNX (optionally quantized to int8), TorchScript or a plain PyTorch file, and check
the file against PyTorch.

``export_subnet(run_path, arch_spec, fmt, out, config)`` does all of it and returns an
``ExportResult``. The file is verified *before* it is renamed into place: an export whose
outputs differ from the PyTorch subnet never replaces anything at ``out``. Without a run,
the latest under ``./runs`` is taken; without ``--arch``, that run's latest search result
(``search-*/best.json``), else its largest subnet.

An int8 export (``config.quantize="int8"``, see ``anas.export.quantize``) is verified
differently: quantization changes the logits, so instead of a tolerance on them the int8
file must agree with the PyTorch subnet on the top-1 class of at least half of the
verification images; its accuracy, size and latency are reported next to the fp32 ones.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anas import __version__
from anas.checks import check_at_least, check_calib_batches
from anas.device import resolve_device
from anas.errors import AnasError, AnasWarning, OutputError
from anas.evaluate.trained import TrainedRun, load_trained_run
from anas.export import onnx, pt, torchscript
from anas.export import quantize as quantization
from anas.export.io import INPUT_NAME, OUTPUT_NAME, Forward
from anas.io import atomic_write
from anas.nn.evaluate import at_resolution, recalibrate_subnet
from anas.nn.static import StaticNet
from anas.space.arch import Arch, parse_arch
from anas.space.cost import arch_costs
from anas.space.schema import space_to_dict
from anas.train.rundir import latest_checkpointed_run


@dataclass(frozen=True)
class Format:
    extension: str
    write: Callable[[StaticNet, Path, dict[str, Any], int | None], None]  # (net, path, metadata, opset)
    load: Callable[[Path], Forward]


FORMATS = {
    "onnx": Format("onnx", lambda net, path, metadata, opset: onnx.write_onnx(net, path, metadata, opset), onnx.load_onnx),
    "torchscript": Format("ts", lambda net, path, metadata, opset: torchscript.write_torchscript(net, path, metadata),
                          torchscript.load_torchscript),
    "pt": Format("pt", lambda net, path, metadata, opset: pt.write_pt(net, path, metadata), pt.load_subnet),
}


def load_exported(fmt: str, path: Path) -> Forward:
    """The exported file as a function from a batch of images to logits, on the CPU."""
    return FORMATS[fmt].load(path)


@dataclass(frozen=True)
class ExportConfig:
    calibrate: bool = True  # re-estimate BN statistics before exporting
    calib_batches: int | None = None  # training batches for that (None: the run's calib_batches)
    opset: int | None = None  # ONNX only (None: onnx.DEFAULT_OPSET)
    device: str = "cpu"  # where the run is loaded and BN recalibrated; exports are always CPU
    data_dir: str | None = None  # replaces the run's data folder (calibration and verification images)
    verify: bool = True  # load the file back and compare it with PyTorch
    verify_images: int = 32  # validation images of the comparison (differs from EXPORT_BATCH)
    tolerance: float = 1e-4  # largest allowed absolute difference of the logits (not for int8)
    quantize: str | None = None  # "int8": static int8 quantization of the ONNX file (onnx only)
    quant_images: int = quantization.CALIB_IMAGES  # training images that calibrate the int8 ranges


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


@dataclass(frozen=True)
class ExportResult:
    path: Path
    fmt: str
    arch: Arch
    mflops: float
    params_m: float
    calib_batches: int  # 0: BN statistics kept as the supernet had them
    opset: int | None
    verification: Verification | None  # None with verify=False
    written: bool  # False when the verification failed: nothing was put at `path`
    run: str = ""  # the run folder exported from
    arch_spec: str = ""  # the --arch it was given (or the default taken)
    chosen: tuple[str, ...] = ()  # what was taken by default: "run", "arch"
    quantize: str | None = None  # "int8" for a quantized ONNX file
    int8: quantization.Int8Report | None = None  # sizes, and with verification accuracy and latency
    failure: str | None = None  # why the int8 file could not be made or loaded (nothing written)

    @property
    def ok(self) -> bool:
        return self.failure is None and (self.verification is None or self.verification.ok)

    def error(self) -> str | None:
        """The one line that says why nothing was written (None when the export is ok)."""
        check = self.verification
        if self.ok:
            return None
        if self.failure is not None:
            reason = self.failure
        elif check.tolerance is None:
            reason = (f"the {self.quantize} model agrees with the PyTorch subnet on the top-1 class of "
                      f"{round(check.top1_agreement * check.images)} of {check.images} validation images "
                      f"(fewer than {check.min_agreement:.0%})")
        else:
            reason = (f"the {self.fmt} export differs from the PyTorch subnet by {check.max_abs_diff:.3g} "
                      f"(more than {check.tolerance:g}) on {check.images} validation images")
        return f"{reason}; nothing was written to {self.path}"

    def to_dict(self) -> dict[str, Any]:
        check = self.verification
        return {
            "path": str(self.path),
            "format": self.fmt,
            "arch": self.arch.to_dict(),
            "resolution": self.arch.resolution,
            "mflops": self.mflops,
            "params_m": self.params_m,
            "calib_batches": self.calib_batches,
            "opset": self.opset,
            "verified": check is not None,
            "max_abs_diff": None if check is None else check.max_abs_diff,
            "top1_agree": None if check is None else check.top1_agree,
            "verified_images": 0 if check is None else check.images,
            "tolerance": None if check is None else check.tolerance,
            "ok": self.ok,
            "written": self.written,
            "run": self.run,
            "arch_spec": self.arch_spec,
            "chosen": list(self.chosen),
            "quantize": self.quantize,
            "top1_agreement": None if check is None else check.top1_agreement,
            **self.int8_dict(),
        }

    def int8_dict(self) -> dict[str, Any]:
        """The int8 keys of ``to_dict`` (None where they do not apply or were not measured)."""
        if self.int8 is not None:
            return self.int8.to_dict()
        return {key: None for key in quantization.Int8Report(0, 0, 0).to_dict()}


class _VerificationFailed(Exception):
    """Raised inside the atomic write so that the checked file is not renamed into place."""

    def __init__(self, verification: Verification):
        super().__init__("verification failed")
        self.verification = verification


# ----------------------------------------------------------------------------------------
# Options and output paths
# ----------------------------------------------------------------------------------------


def check_options(fmt: str, config: ExportConfig) -> None:
    """Refuse bad options before any work is done."""
    if fmt not in FORMATS:
        raise AnasError(f"unknown export format {fmt!r} (formats: {', '.join(FORMATS)})")
    if config.opset is not None:
        if fmt != "onnx":
            raise AnasError("--opset goes with --to onnx")
        onnx.check_opset(config.opset)
    if fmt == "onnx" and importlib.util.find_spec("onnxscript") is None:
        raise AnasError("ONNX export needs the onnxscript package: pip install onnxscript")
    quantization.check_quantize(fmt, config.quantize)
    check_calib_batches(config.calib_batches)
    check_at_least(config.verify_images, 1, "verify_images")
    check_at_least(config.quant_images, 1, "quant_images")
    resolve_device(config.device)


def latest_search_result(run_path: str | Path) -> Path | None:
    """The newest ``search-*/best.json`` in a run folder (``anas search`` writes it there
    when the run folder holds the predictor), or None."""
    return max(Path(run_path).glob("search-*/best.json"), key=lambda path: path.stat().st_mtime, default=None)


def default_output(run_path: str | Path, arch_spec: str, fmt: str, quantized: str | None = None) -> Path:
    """``RUN_DIR/exports/<name>.<ext>``: name is the spec when it is one word (``max``,
    ``a0``), the file's stem when it names a file, else ``subnet``; a quantized export
    adds ``-int8`` to the name (``max-int8.onnx``)."""
    spec = arch_spec.strip()
    if not spec.startswith("{") and Path(spec).is_file():
        name = Path(spec).stem
    elif re.fullmatch(r"[A-Za-z0-9_.-]+", spec):
        name = spec.lower()
    else:
        name = "subnet"
    if quantized is not None:
        name = f"{name}-{quantized}"
    return Path(run_path) / "exports" / f"{name}.{FORMATS[fmt].extension}"


def check_output(path: Path) -> None:
    """The cheap checks of ``atomic_write``, made before the work rather than after it."""
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputError(f"cannot write {path}: {blocker} is a file, not a folder")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    existing = next(p for p in path.parents if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {existing} is not writable")


# ----------------------------------------------------------------------------------------
# The subnet and its data
# ----------------------------------------------------------------------------------------


def prepare_subnet(run: TrainedRun, arch: Arch, calib_batches: int | None) -> StaticNet:
    """The static network of ``arch`` with the run's weights, its BN statistics
    re-estimated on ``calib_batches`` training batches (None: kept as they are); on the
    CPU, in eval mode."""
    net = run.extract(arch)
    if calib_batches is not None:
        recalibrate_subnet(net, arch.resolution, run.calibration_batches(), calib_batches, run.device)
    return net.cpu().eval()


def validation_images(run: TrainedRun, resolution: int, count: int) -> torch.Tensor:
    """The first ``count`` validation images of the run (fewer if the split is smaller),
    normalized and resized to ``resolution``."""
    parts, seen = [], 0
    for images, _ in at_resolution(run.evaluation_batches("val"), resolution):
        parts.append(images[: count - seen])
        seen += len(parts[-1])
        if seen >= count:
            break
    if not parts:
        raise AnasError(f"run {run.run_dir.path} has no validation images to verify the export with")
    return torch.cat(parts).float().cpu()


def preprocessing(run: TrainedRun) -> dict[str, Any]:
    """Mean, std and class names of the run's data (from the checkpoint when it has them)."""
    info = run.data_info
    if all(key in info for key in ("mean", "std", "class_names")):
        mean, std, names = info["mean"], info["std"], info["class_names"]
    else:
        mean, std, names = run.data.mean, run.data.std, run.data.class_names
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "class_names": [str(n) for n in names]}


def export_metadata(run: TrainedRun, arch: Arch, calib_batches: int) -> dict[str, Any]:
    """What a deployment needs to feed the network, plus where it came from."""
    return {
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_layout": "NCHW",
        "resolution": arch.resolution,
        **preprocessing(run),
        "preprocessing": (f"resize to {arch.resolution}x{arch.resolution} (bilinear), scale pixels to [0, 1], "
                          "subtract mean and divide by std per channel, NCHW float32"),
        "num_classes": run.num_classes,
        "arch": arch.to_dict(),
        "space": space_to_dict(run.space),
        "calib_batches": calib_batches,
        "anas_version": __version__,
    }


# ----------------------------------------------------------------------------------------
# Verification and the whole export
# ----------------------------------------------------------------------------------------


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


def write_int8(net: StaticNet, path: Path, metadata: dict[str, Any], opset: int, run: TrainedRun, config: ExportConfig,
               images: torch.Tensor | None, checks: list[Verification]) -> quantization.Int8Report:
    """Write the fp32 ONNX file to a temporary folder, quantize it into ``path`` and, with
    verification ``images``, check it (appended to ``checks``; ``_VerificationFailed``
    when it fails) and measure it. Returns the sizes and measurements."""
    chunks = quantization.calibration_inputs(run.calibration_batches(), net.resolution, config.quant_images)
    calibrated = sum(len(chunk) for chunk in chunks)
    metadata = {**metadata, "quantization": quantization.quantization_metadata(calibrated)}
    with tempfile.TemporaryDirectory(prefix="anas-export-") as folder:
        fp32 = Path(folder) / "fp32.onnx"
        onnx.write_onnx(net, fp32, metadata, opset)
        quantization.quantize_onnx(fp32, path, chunks)
        if images is None:
            return quantization.Int8Report(calibrated, fp32.stat().st_size, path.stat().st_size)
        int8 = quantization.session_forward(quantization.load_session(path))
        checks.append(verify(int8, net, images, None, quantization.MIN_TOP1_AGREEMENT))
        if not checks[-1].ok:
            raise _VerificationFailed(checks[-1])
        return quantization.measure(net, fp32, path, run.evaluation_batches("val"), images[:1], calibrated)


def export_subnet(run_path: str | Path | None, arch_spec: str | None, fmt: str, out: str | Path | None = None,
                  config: ExportConfig = ExportConfig()) -> ExportResult:
    """Export ``arch_spec`` of the run in ``run_path`` as ``fmt`` to ``out`` (default:
    ``RUN_DIR/exports/<name>.<ext>``), verified unless ``config.verify`` is False."""
    check_options(fmt, config)
    if out is not None:
        check_output(Path(out))
    chosen = []
    if run_path is None:
        run_path, chosen = latest_checkpointed_run(), ["run"]
    if arch_spec is None:
        best = latest_search_result(run_path)
        arch_spec = str(best) if best is not None else "max"
        chosen.append("arch")
    run = load_trained_run(run_path, config.device, config.data_dir)
    if run.label_free:
        warnings.warn(f"run {run_path} was trained without labels (--objective {run.config.objective}): the exported "
                      f"classifier is untrained; fine-tune first (anas train --init {run_path})", AnasWarning,
                      stacklevel=2)
    arch = parse_arch(run.space, arch_spec)
    path = Path(out) if out is not None else default_output(run_path, arch_spec, fmt, config.quantize)
    check_output(path)

    calib = (config.calib_batches or run.config.calib_batches) if config.calibrate else None
    net = prepare_subnet(run, arch, calib)
    metadata = export_metadata(run, arch, calib or 0)
    opset = (config.opset or onnx.DEFAULT_OPSET) if fmt == "onnx" else None
    images = validation_images(run, arch.resolution, config.verify_images) if config.verify else None
    checks: list[Verification] = []
    reports: list[quantization.Int8Report] = []

    def write(tmp: Path) -> None:
        if config.quantize is not None:
            reports.append(write_int8(net, tmp, metadata, opset, run, config, images, checks))
            return
        FORMATS[fmt].write(net, tmp, metadata, opset)
        if images is not None:
            checks.append(verify(load_exported(fmt, tmp), net, images, config.tolerance))
            if not checks[-1].ok:
                raise _VerificationFailed(checks[-1])

    written, failure = True, None
    try:
        atomic_write(path, write)
    except _VerificationFailed:
        written = False
    except quantization.Int8Error as exc:
        written, failure = False, str(exc)
    mflops, params_m = arch_costs(run.space, arch, run.num_classes)
    return ExportResult(path, fmt, arch, mflops, params_m, calib or 0, opset, checks[-1] if checks else None,
                        written, str(run_path), arch_spec, tuple(chosen), config.quantize,
                        reports[-1] if reports else None, failure)
