"""Shipping a subnet: extract it from a trained run, recalibrate its BN statistics, export
it to ONNX (optionally quantized to int8), TorchScript or a plain PyTorch file, and check
the file against PyTorch.

``export_subnet(options)`` does all of it and returns an ``ExportResult``; the formats are
plug-ins (:mod:`anas.export.formats`). The file is verified *before* it is renamed into place: an export whose
outputs differ from the PyTorch subnet never replaces anything at ``out``. Without a run,
the latest under ``./runs`` is taken; without ``--arch``, that run's latest search result
(``search-*/best.json``), else its largest subnet.

An int8 export (``config.quantize="int8"``, see ``anas.export.quantize``) is verified
differently: quantization changes the logits, so instead of a tolerance on them the int8
file must agree with the PyTorch subnet on the top-1 class of at least half of the
verification images; its accuracy, size and latency are reported next to the fp32 ones.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import anas.export.quantize as quantization
from anas import __version__
from anas.errors import AnasError, AnasWarning, OutputError
from anas.evaluate.trained import CalibrationOption, TrainedRun, TrainedRunOptions, load_trained_run
from anas.export.formats import EXPORT_FORMATS, ExportFailed, ExportJob, Verification
from anas.export.interface import INPUT_NAME, OUTPUT_NAME
from anas.io import atomic_write
from anas.nn.accuracy import at_resolution, recalibrate_subnet
from anas.nn.static import StaticNet
from anas.options import HostsPlugins, option
from anas.runtime.device import DeviceOption
from anas.runtime.rundir import latest_checkpointed_run
from anas.space.arch import Arch, parse_arch
from anas.space.cost import arch_costs
from anas.space.schema import space_to_dict

VERIFY_IMAGES = 32  # validation images of the comparison with PyTorch (differs from EXPORT_BATCH)


@dataclass(frozen=True, kw_only=True)
class ExportOptions(TrainedRunOptions, CalibrationOption, DeviceOption, HostsPlugins):
    """Every option of ``anas export``, and those of the format it writes. ``--device`` is
    where the run is loaded and BN recalibrated: files are exported on the CPU."""

    arch: str | None = option(None, "Subnet: JSON file (e.g. a search's best.json), JSON string, min, max, random, "
                                    "or a model name.", short="-a",
                              default_text="the run's latest search-*/best.json, else max")
    to: str = option(help="Format.", short="-t", choices=EXPORT_FORMATS)
    out: str | None = option(None, "Output file.", short="-o",
                             default_text="RUN/exports/<name>.<extension>, <name>-int8.onnx with --quantize int8")
    calibrate: bool = option(True, "Re-estimate the BN statistics on training batches (--no-calibrate: keep the "
                                   "supernet's).")
    verify: bool = option(True, "Load the file back and compare it with PyTorch on validation images.")
    tolerance: float = option(1e-4, "Largest allowed absolute difference of the logits in the verification (not "
                                    "with --quantize).", min=0)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.calibrate and self.calib_batches is not None:
            raise AnasError("--calib-batches and --no-calibrate exclude each other")


@dataclass(frozen=True)
class ExportResult:
    path: Path
    fmt: str
    arch: Arch
    mflops: float
    params_m: float
    calib_batches: int  # 0: BN statistics kept as the supernet had them
    opset: int | None
    verification: Verification | None  # None with --no-verify
    written: bool  # False when the verification failed: nothing was put at `path`
    run: str = ""  # the run folder exported from
    arch_spec: str = ""  # the --arch it was given (or the default taken)
    chosen: tuple[str, ...] = ()  # what was taken by default: "run", "arch"
    quantize: str | None = None  # the format's variant: "int8" for a quantized ONNX file
    int8: quantization.Int8Report | None = None  # sizes, and with verification accuracy and latency
    failure: str | None = None  # why the file could not be made or loaded (nothing written)

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


# ----------------------------------------------------------------------------------------
# Output paths
# ----------------------------------------------------------------------------------------


def latest_search_result(run_path: str | Path) -> Path | None:
    """The newest ``search-*/best.json`` in a run folder (``anas search`` writes it there
    when the run folder holds the predictor), or None."""
    return max(Path(run_path).glob("search-*/best.json"), key=lambda path: path.stat().st_mtime, default=None)


def default_output(run_path: str | Path, arch_spec: str, extension: str, variant: str | None = None) -> Path:
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
    if variant is not None:
        name = f"{name}-{variant}"
    return Path(run_path) / "exports" / f"{name}.{extension}"


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
# The whole export
# ----------------------------------------------------------------------------------------


def export_subnet(options: ExportOptions) -> ExportResult:
    """Export ``options.arch`` of the run ``options.run`` in the format ``options.to`` to
    ``options.out`` (default: ``RUN_DIR/exports/<name>.<ext>``), verified unless
    ``options.verify`` is False. The file is checked before it is renamed into place."""
    fmt = EXPORT_FORMATS.entry(options.to).name
    exporter, format_options = EXPORT_FORMATS.get(fmt)(), options.options_for("to")
    if options.out is not None:
        check_output(Path(options.out))
    run_path, arch_spec, chosen = options.run, options.arch, []
    if run_path is None:
        run_path, chosen = latest_checkpointed_run(), ["run"]
    if arch_spec is None:
        best = latest_search_result(run_path)
        arch_spec = str(best) if best is not None else "max"
        chosen.append("arch")
    run = load_trained_run(run_path, options.device, options.data_dir)
    if run.label_free:
        warnings.warn(f"run {run_path} was trained without labels (--objective {run.config.objective}): the exported "
                      f"classifier is untrained; fine-tune first (anas train --init {run_path})", AnasWarning,
                      stacklevel=2)
    arch = parse_arch(run.space, arch_spec)
    variant = exporter.variant(format_options)
    path = Path(options.out) if options.out is not None else default_output(run_path, arch_spec, exporter.extension,
                                                                             variant)
    check_output(path)

    calib = (options.calib_batches or run.config.calib_batches) if options.calibrate else None
    net = prepare_subnet(run, arch, calib)
    images = validation_images(run, arch.resolution, VERIFY_IMAGES) if options.verify else None
    job = ExportJob(net, export_metadata(run, arch, calib or 0), format_options, images, options.tolerance,
                    run.calibration_batches, lambda: run.evaluation_batches("val"))
    outcomes = []

    def write(tmp: Path) -> None:
        outcomes.append(exporter.export(job, tmp))
        if outcomes[-1].verification is not None and not outcomes[-1].verification.ok:
            raise _VerificationFailed

    written, failure = True, None
    try:
        atomic_write(path, write)
    except _VerificationFailed:
        written = False
    except ExportFailed as exc:
        written, failure = False, str(exc)
    mflops, params_m = arch_costs(run.space, arch, run.num_classes)
    outcome = outcomes[-1] if outcomes else None
    return ExportResult(path, fmt, arch, mflops, params_m, calib or 0, exporter.opset(format_options),
                        outcome.verification if outcome else None, written, str(run_path), arch_spec, tuple(chosen),
                        variant, outcome.report if outcome else None, failure)
