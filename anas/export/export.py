"""Shipping a subnet: extract it from a trained run, recalibrate its BN statistics, export
it to ONNX, TorchScript or a plain PyTorch file, and check the file against PyTorch.

``export_subnet(run_path, arch_spec, fmt, out, config)`` does all of it and returns an
``ExportResult``. Each format has one writer (``export_onnx``, ``export_torchscript``,
``export_pt``) and one loader (``load_exported``); ``load_subnet`` rebuilds the static
network of a ``pt`` file. The file is verified *before* it is renamed into place: an
export whose outputs differ from the PyTorch subnet never replaces anything at ``out``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anas import __version__
from anas.space.arch import Arch, arch_from_dict, parse_arch
from anas.space.cost import arch_costs
from anas.errors import AnasError, CheckpointError, OutputError
from anas.nn.evaluate import at_resolution, recalibrate_subnet
from anas.io import atomic_write
from anas.space.space import space_from_dict, space_to_dict
from anas.nn.static import StaticNet
from anas.train.rundir import safe_torch_load
from anas.evaluate.trained import TrainedRun, load_trained_run

FORMATS = {"onnx": "onnx", "torchscript": "ts", "pt": "pt"}  # format -> file extension
SUBNET_FORMAT = "anas-subnet-1"  # the format tag of `pt` files
DEFAULT_OPSET = 18  # the oldest opset torch's exporter implements natively
MIN_OPSET = 18
EXPORT_BATCH = 2  # batch of the example input used for tracing / torch.export
INPUT_NAME, OUTPUT_NAME = "input", "logits"
Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ExportConfig:
    calibrate: bool = True  # re-estimate BN statistics before exporting
    calib_batches: int | None = None  # training batches for that (None: the run's calib_batches)
    opset: int | None = None  # ONNX only (None: DEFAULT_OPSET)
    device: str = "cpu"  # where the run is loaded and BN recalibrated; exports are always CPU
    verify: bool = True  # load the file back and compare it with PyTorch
    verify_images: int = 32  # validation images of the comparison (differs from EXPORT_BATCH)
    tolerance: float = 1e-4  # largest allowed absolute difference of the logits


@dataclass(frozen=True)
class Verification:
    max_abs_diff: float
    top1_agree: bool
    images: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


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

    @property
    def ok(self) -> bool:
        return self.verification is None or self.verification.ok

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
        }


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
        import onnx  # lazy: only ONNX exports need it

        newest = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= config.opset <= newest:
            raise AnasError(f"--opset {config.opset} is not supported (allowed: {MIN_OPSET} to {newest})")
    if fmt == "onnx" and importlib.util.find_spec("onnxscript") is None:
        raise AnasError("ONNX export needs the onnxscript package: pip install onnxscript")
    if config.calib_batches is not None and config.calib_batches < 1:
        raise AnasError(f"--calib-batches must be at least 1, got {config.calib_batches}")
    if config.verify_images < 1:
        raise AnasError(f"verify_images must be at least 1, got {config.verify_images}")
    device = config.device
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise AnasError(f"--device {device!r} is not cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AnasError("--device cuda: no CUDA device is available")


def default_output(run_path: str | Path, arch_spec: str, fmt: str) -> Path:
    """``RUN_DIR/exports/<name>.<ext>``: name is the spec when it is one word (``max``,
    ``a0``), the file's stem when it names a file, else ``subnet``."""
    spec = arch_spec.strip()
    if not spec.startswith("{") and Path(spec).is_file():
        name = Path(spec).stem
    elif re.fullmatch(r"[A-Za-z0-9_.-]+", spec):
        name = spec.lower()
    else:
        name = "subnet"
    return Path(run_path) / "exports" / f"{name}.{FORMATS[fmt]}"


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
# Writers and loaders, one per format
# ----------------------------------------------------------------------------------------


@contextmanager
def _quiet_torch():
    """Hide torch's deprecation warnings for TorchScript (every jit call warns)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _example(net: StaticNet) -> torch.Tensor:
    return torch.zeros(EXPORT_BATCH, net.first_conv.conv.in_channels, net.resolution, net.resolution)


def export_onnx(net: StaticNet, path: Path, metadata: dict[str, Any], opset: int = DEFAULT_OPSET) -> None:
    """ONNX through torch's ``torch.export``-based exporter: input ``input`` (NCHW float32),
    output ``logits``, a dynamic batch axis; ``metadata`` goes into ``metadata_props``
    (values that are not strings as JSON)."""
    import onnx

    batch = torch.export.Dim("batch")
    program = torch.onnx.export(net, (_example(net),), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True, verbose=False)
    model = program.model_proto
    produced = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if produced != opset:
        raise AnasError(f"the ONNX exporter could not produce opset {opset} (it gave {produced})")
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def export_torchscript(net: StaticNet, path: Path, metadata: dict[str, Any]) -> None:
    """A traced module; ``metadata`` rides along as the extra file ``anas.json``."""
    with _quiet_torch(), torch.no_grad():
        traced = torch.jit.trace(net, _example(net))
        torch.jit.save(traced, str(path), _extra_files={"anas.json": json.dumps(metadata)})


def export_pt(net: StaticNet, path: Path, metadata: dict[str, Any]) -> None:
    """``torch.save`` of plain data and tensors only (``load_subnet`` reads it back)."""
    state = {key: tensor.detach().cpu().clone() for key, tensor in net.state_dict().items()}
    torch.save({"format": SUBNET_FORMAT, **metadata, "state_dict": state}, str(path))


def load_subnet(path: str | Path) -> StaticNet:
    """Rebuild the static network of a ``pt`` export (``torch.load(weights_only=True)``): in
    eval mode, on the CPU, with ``mean``, ``std`` and ``class_names`` as attributes. Any
    other file is a one-line ``CheckpointError``."""
    path = Path(path)
    data = safe_torch_load(path, "subnet file")
    if not isinstance(data, dict) or data.get("format") != SUBNET_FORMAT:
        raise CheckpointError(f"{path} is not an anas subnet file (anas export --to pt)")
    try:
        space = space_from_dict(data["space"], f"{path} (space)")
        net = StaticNet(space, arch_from_dict(space, data["arch"]), int(data["num_classes"]))
        net.load_state_dict(data["state_dict"])
    except (AnasError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(f"subnet file {path} is inconsistent: {reason}") from None
    net.mean, net.std, net.class_names = data.get("mean"), data.get("std"), data.get("class_names")
    return net.eval()


def load_exported(fmt: str, path: Path) -> Forward:
    """The exported file as a function from a batch of images to logits, on the CPU."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            reason = " ".join(str(exc).split())[:200]
            raise AnasError(f"onnxruntime {ort.__version__} cannot load the exported model "
                            f"(try another --opset): {reason}") from None
        return lambda images: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0])
    if fmt == "torchscript":
        with _quiet_torch():
            module = torch.jit.load(str(path), map_location="cpu")
    else:
        module = load_subnet(path)
    return module


# ----------------------------------------------------------------------------------------
# Verification and the whole export
# ----------------------------------------------------------------------------------------


@torch.no_grad()
def verify(exported: Forward, reference: StaticNet, images: torch.Tensor, tolerance: float = 1e-4) -> Verification:
    """Largest absolute difference of the logits and top-1 agreement of the exported model
    and the PyTorch subnet on ``images``."""
    expected = reference(images).float()
    got = torch.as_tensor(exported(images)).float()
    if got.shape != expected.shape:
        raise AnasError(f"the exported model gives logits of shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    diff = float((got - expected).abs().max())
    agree = bool((got.argmax(1) == expected.argmax(1)).all())
    return Verification(diff if math.isfinite(diff) else float("inf"), agree, len(images), tolerance)


def export_subnet(run_path: str | Path, arch_spec: str, fmt: str, out: str | Path | None = None,
                  config: ExportConfig = ExportConfig()) -> ExportResult:
    """Export ``arch_spec`` of the run in ``run_path`` as ``fmt`` to ``out`` (default:
    ``RUN_DIR/exports/<name>.<ext>``), verified unless ``config.verify`` is False."""
    check_options(fmt, config)
    if out is not None:
        check_output(Path(out))
    run = load_trained_run(run_path, config.device)
    arch = parse_arch(run.space, arch_spec)
    path = Path(out) if out is not None else default_output(run_path, arch_spec, fmt)
    check_output(path)

    calib = (config.calib_batches or run.config.calib_batches) if config.calibrate else None
    net = prepare_subnet(run, arch, calib)
    metadata = export_metadata(run, arch, calib or 0)
    opset = (config.opset or DEFAULT_OPSET) if fmt == "onnx" else None
    images = validation_images(run, arch.resolution, config.verify_images) if config.verify else None
    checks: list[Verification] = []

    def write(tmp: Path) -> None:
        if fmt == "onnx":
            export_onnx(net, tmp, metadata, opset)
        elif fmt == "torchscript":
            export_torchscript(net, tmp, metadata)
        else:
            export_pt(net, tmp, metadata)
        if images is not None:
            checks.append(verify(load_exported(fmt, tmp), net, images, config.tolerance))
            if not checks[-1].ok:
                raise _VerificationFailed(checks[-1])

    written = True
    try:
        atomic_write(path, write)
    except _VerificationFailed:
        written = False
    mflops, params_m = arch_costs(run.space, arch, run.num_classes)
    return ExportResult(path, fmt, arch, mflops, params_m, calib or 0, opset,
                        checks[-1] if checks else None, written)
