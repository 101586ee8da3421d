"""The published AttentiveNAS and AlphaNet supernets, imported into a run folder
(``anas import``).

Both were trained with the AttentiveNAS code (facebookresearch/AttentiveNAS; AlphaNet
reuses its model and its checkpoint writer), which saves ``{"state_dict": ..., "args":
<its configuration object>, "epoch", "optimizer", "lr_scheduler"}`` with ``torch.save``.
The state dict's names carry a ``module.`` prefix (the model was wrapped for
data-parallel training) and follow the authors' modules:

===========================================================  =====================================
authors' name (``module.`` + ...)                             anas name
===========================================================  =====================================
``first_conv.conv.conv.weight``, ``first_conv.bn.bn.X``       ``first_conv.conv.weight``, ``first_conv.bn.X``
``blocks.N.mobile_inverted_conv.inverted_bottleneck.``         ``stages.S.J.expand.`` (conv and bn as above)
``blocks.N.mobile_inverted_conv.depth_conv.``                  ``stages.S.J.depthwise.``
``blocks.N.mobile_inverted_conv.depth_conv.se.fc.reduce.X``    ``stages.S.J.se.reduce.X`` (``expand`` alike)
``blocks.N.mobile_inverted_conv.point_linear.``                ``stages.S.J.project.``
``blocks.N.shortcut.conv.conv.weight``                         ``stages.S.J.shortcut.conv.weight``
``last_conv.final_expand_layer.``                              ``head.expand.``
``last_conv.feature_mix_layer.conv.conv.weight``               ``head.mix.weight``
``classifier.linear.linear.X``                                 ``head.classifier.X``
===========================================================  =====================================

where block ``N`` counts the blocks of all stages at their largest depth (``J``-th block
of stage ``S``). Two kinds of tensors in the file have no use in anas and are listed, not
loaded: each BN's ``bn_tracking.{0,1}.*`` (running statistics the authors keep for the
largest and the smallest subnet; anas recalibrates BN per subnet) and the shortcut
convolutions of blocks whose input and output widths always agree (never run).

The file is never unpickled with the full pickle machinery: it is read with
``torch.load(weights_only=True)``, whose unpickler rebuilds only tensors and plain
containers. Each other object the file names (the configuration object) is rebuilt as an
inert ``collections.OrderedDict`` stand-in: nothing the file names is imported or called,
and names that torch blocks outright (``os``, ``subprocess``, ...) make the file refused.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anas.data import IMAGENET_MEAN, IMAGENET_STD, DataFolderOptions
from anas.errors import AnasError, CheckpointError, one_line
from anas.nn.supernet import Supernet
from anas.options import option, to_yaml
from anas.registry import Registry
from anas.runtime.rundir import RunDir
from anas.space.schema import load_space, space_to_dict
from anas.space.search_space import SearchSpace
from anas.train.config import build_config

IMPORT_SOURCES: Registry = Registry("import source")
"""Whose supernets ``anas import --from`` reads; each registers the line that names it."""
IMPORT_SOURCES.register("attentivenas")("AttentiveNAS (Wang et al., CVPR 2021), facebookresearch/AttentiveNAS")
IMPORT_SOURCES.register("alphanet")("AlphaNet (Wang et al., ICML 2021), facebookresearch/AlphaNet")
PUBLISHED_SPACE, PUBLISHED_CLASSES = "attentive-nas", 1000


@dataclass(frozen=True, kw_only=True)
class ImportOptions(DataFolderOptions):
    """Every option of ``anas import``; ``--data-dir`` is the ImageNet folder (train/ and
    val/) for BN recalibration and evaluation."""

    checkpoint: str = option(help="The authors' checkpoint file (e.g. attentive_nas_pretrained.pth.tar).",
                             argument=True)
    source: str = option(help="Whose supernet.", flag="--from", choices=IMPORT_SOURCES)
    out: str | None = option(None, "Run folder to write.", short="-o", default_text="runs/<from>-imported")
    space: str = option(PUBLISHED_SPACE, "Space of the supernet (the published ones are attentive-nas).", short="-s")
    num_classes: int = option(PUBLISHED_CLASSES, "Classes of the classifier (the published ones: 1000).", min=1)
PREFIX = "module."
MAX_STAND_INS = 64  # distinct foreign names a checkpoint may hold before it is refused
UNUSED_KINDS = {
    "bn_tracking": "BN statistics tracking the largest and smallest subnets",
    "shortcut": "shortcut convolutions of blocks whose widths never change (never run)",
}
_UNSUPPORTED = re.compile(r"GLOBAL ([\w.]+) was not an allowed global")


# ----------------------------------------------------------------------------------------
# Reading the file
# ----------------------------------------------------------------------------------------


def read_foreign_checkpoint(path: str | Path) -> tuple[Any, list[str]]:
    """The object in a ``torch.save`` file written by other code, tensors rebuilt and every
    other named object replaced by an inert ``OrderedDict``; and those names. A file that
    cannot be read that way (truncated, not a checkpoint, naming a blocked module) is a
    one-line ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    stand_ins: list[str] = []
    while True:
        try:
            with torch.serialization.safe_globals([(collections.OrderedDict, name) for name in stand_ins]):
                return torch.load(path, map_location="cpu", weights_only=True), stand_ins
        except pickle.UnpicklingError as exc:
            match = _UNSUPPORTED.search(str(exc))
            if match is None or match.group(1) in stand_ins or len(stand_ins) >= MAX_STAND_INS:
                raise CheckpointError(f"{path} cannot be read safely: {_reason(exc)}") from None
            stand_ins.append(match.group(1))
        except Exception as exc:  # torch raises many types for files that are not checkpoints
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {one_line(exc, 150)}") from None


def _reason(exc: Exception) -> str:
    """torch's weights-only message, without its advice to unpickle the file fully."""
    text = " ".join(str(exc).split())
    found = re.search(r"(Trying to load unsupported GLOBAL [^.]+\.[^ ]+ whose module \S+ is blocked)", text)
    if found:
        return found.group(1)
    found = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
    return (found.group(1) if found else one_line(exc, 150))[:200]


# ----------------------------------------------------------------------------------------
# The authors' names
# ----------------------------------------------------------------------------------------


def authors_names(space: SearchSpace, state: dict[str, torch.Tensor]) -> dict[str, str]:
    """For every name of an anas supernet's ``state``, the authors' name (without the
    ``module.`` prefix)."""
    block_of = {}
    n = 0
    for s, stage in enumerate(space.stages):
        for j in range(max(stage.depths)):
            block_of[f"stages.{s}.{j}."] = f"blocks.{n}."
            n += 1
    return {name: _authors_name(name, block_of) for name in state}


def _authors_name(name: str, block_of: dict[str, str]) -> str:
    if name.startswith("first_conv."):
        return "first_conv." + _conv_bn(name[len("first_conv."):])
    if name.startswith("head."):
        rest = name[len("head."):]
        if rest.startswith("expand."):
            return "last_conv.final_expand_layer." + _conv_bn(rest[len("expand."):])
        if rest == "mix.weight":
            return "last_conv.feature_mix_layer.conv.conv.weight"
        return "classifier.linear.linear." + rest[len("classifier."):]
    prefix = re.match(r"stages\.\d+\.\d+\.", name).group(0)
    rest = name[len(prefix):]
    block = block_of[prefix]
    module, _, tail = rest.partition(".")
    if module == "se":
        return f"{block}mobile_inverted_conv.depth_conv.se.fc.{tail}"
    if module == "shortcut":
        return f"{block}shortcut.conv.conv.weight"
    authors = {"expand": "inverted_bottleneck", "depthwise": "depth_conv", "project": "point_linear"}[module]
    return f"{block}mobile_inverted_conv.{authors}.{_conv_bn(tail)}"


def _conv_bn(tail: str) -> str:
    """``conv.weight`` -> ``conv.conv.weight``; ``bn.X`` -> ``bn.bn.X`` (the authors wrap each layer once more)."""
    module, _, rest = tail.partition(".")
    return f"{module}.{module}.{rest}"


def unused_kind(space: SearchSpace, name: str, used: set[str]) -> str | None:
    """Which kind of tensor anas has no use for ``name`` is (see :data:`UNUSED_KINDS`), or None."""
    if ".bn_tracking." in name:
        return "bn_tracking"
    if re.fullmatch(r"blocks\.\d+\.shortcut\.conv\.conv\.weight", name) and name not in used:
        return "shortcut"
    return None


# ----------------------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    run_dir: str
    source: str
    checkpoint: str
    sha256: str
    tensors: int  # anas tensors filled
    unused: dict[str, int] = field(default_factory=dict)  # kind -> tensors of the file not loaded
    other_entries: list[str] = field(default_factory=list)  # the file's entries besides state_dict
    stand_ins: list[str] = field(default_factory=list)  # objects the file names, rebuilt inert

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "source": self.source, "checkpoint": self.checkpoint,
                "sha256": self.sha256, "tensors": self.tensors, "unused": self.unused,
                "other_entries": self.other_entries, "stand_ins": self.stand_ins}


def import_published(options: ImportOptions) -> ImportReport:
    """Map the authors' checkpoint onto an anas supernet of ``options.space`` and write the
    run folder ``options.out`` (config.yaml, checkpoints/last.pt, train.log). Nothing is
    written when any tensor is missing, mis-shaped or unexpected."""
    source, checkpoint, space_name, num_classes = options.source, options.checkpoint, options.space, options.num_classes
    run_dir = RunDir(options.out or Path("runs") / f"{source}-imported")
    if run_dir.path.is_file() or (run_dir.path.is_dir() and any(run_dir.path.iterdir())):
        raise AnasError(f"{run_dir.path} already exists: choose another --out")
    space = load_space(space_name)
    config = build_config({"space": space_name, "data": "imagefolder", "data_dir": options.data_dir,
                           "num_classes": num_classes, "run_dir": str(run_dir.path), "epochs": 1})
    path = Path(checkpoint)
    loaded, stand_ins = read_foreign_checkpoint(path)
    foreign = _state_dict_of(loaded, path)
    supernet = Supernet(space, num_classes)
    state, unused = map_state(space, supernet.state_dict(), foreign, path)
    supernet.load_state_dict(state)
    digest = _sha256(path)
    others = sorted(str(key) for key in loaded if key != "state_dict")
    report = ImportReport(str(run_dir.path), source, path.name, digest, len(state), unused, others, stand_ins)
    _write_run(run_dir, supernet, space, config, report)
    return report


def _state_dict_of(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(loaded, dict) or not isinstance(loaded.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not an AttentiveNAS checkpoint: it has no state_dict entry")
    state = loaded["state_dict"]
    bad = next((key for key, value in state.items() if not isinstance(value, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: state_dict entry {bad!r} is not a tensor")
    return {key.removeprefix(PREFIX): value for key, value in state.items()}


def map_state(space: SearchSpace, target: dict[str, torch.Tensor], foreign: dict[str, torch.Tensor],
              path: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """anas's ``target`` state filled from the authors' ``foreign`` one (names without the
    prefix): every tensor exactly once, shapes checked; returns it and the count of the
    file's unused tensors per kind. The first missing, mis-shaped or unexpected tensor is a
    one-line ``CheckpointError``."""
    names = authors_names(space, target)
    state = {}
    for name, tensor in target.items():
        authors = names[name]
        if authors not in foreign:
            raise CheckpointError(f"{path} has no tensor {PREFIX}{authors} (anas {name}): not an AttentiveNAS "
                                  f"supernet of space {space.name}")
        value = foreign[authors]
        if tuple(value.shape) != tuple(tensor.shape):
            raise CheckpointError(f"{path}: {PREFIX}{authors} has shape {tuple(value.shape)}, space {space.name} "
                                  f"with {target['head.classifier.weight'].shape[0]} classes needs "
                                  f"{tuple(tensor.shape)}")
        state[name] = value.to(tensor.dtype)
    used = set(names.values())
    unused: dict[str, int] = {}
    for authors in foreign:
        if authors in used:
            continue
        kind = unused_kind(space, authors, used)
        if kind is None:
            raise CheckpointError(f"{path} holds an unexpected tensor {PREFIX}{authors}: not an AttentiveNAS "
                                  f"supernet of space {space.name}")
        unused[kind] = unused.get(kind, 0) + 1
    return state, unused


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_run(run_dir: RunDir, supernet: Supernet, space: SearchSpace, config, report: ImportReport) -> None:
    """The run folder: checkpoint first (atomic), then config.yaml and train.log."""
    state = {"space": space_to_dict(space), "config": config.to_dict(), "model": supernet.state_dict(),
             "epoch": 0, "step_in_epoch": 0, "global_step": 0, "num_classes": supernet.num_classes,
             "imported": report.to_dict(),
             "data": {"name": "imagefolder", "num_classes": supernet.num_classes,
                      "class_names": [str(i) for i in range(supernet.num_classes)],
                      "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
    run_dir.save_checkpoint(state)
    run_dir.write_config(to_yaml(config))
    run_dir.log(f"imported from {IMPORT_SOURCES.get(report.source)}: {report.checkpoint} (sha256 {report.sha256}), "
                f"{report.tensors} tensors of space {space.name} with {supernet.num_classes} classes")
    for kind, count in report.unused.items():
        run_dir.log(f"not loaded: {count} tensors, {UNUSED_KINDS[kind]}")
    if report.other_entries:
        run_dir.log(f"not loaded: the file's other entries ({', '.join(report.other_entries)}: training state)")
    if report.stand_ins:
        run_dir.log(f"objects the file names, read as inert placeholders: {', '.join(report.stand_ins)}")
