"""A trained run, loaded back: the supernet with its weights, its space, configuration and
data. What ``anas predict-fit``, ``anas search --verify`` and ``anas export`` start from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from anas.data import DataFolderOptions, DataSplits, calibration_loader, evaluation_loader, load_data
from anas.errors import CheckpointError, one_line
from anas.nn.accuracy import EvalResult, evaluate_subnet
from anas.nn.probe import probe_subnet
from anas.nn.static import StaticNet
from anas.nn.supernet import Supernet
from anas.options import option, updated
from anas.runtime.device import resolve_device
from anas.runtime.rundir import RunDir, checkpoint_space
from anas.space.arch import Arch
from anas.space.search_space import SearchSpace
from anas.train.config import TrainConfig, saved_config
from anas.train.objectives import OBJECTIVES
from anas.train.regularizers.teacher import evaluates_teacher


@dataclass(frozen=True, kw_only=True)
class TrainedRunOptions(DataFolderOptions):
    """The run folder a command starts from, and where its data is."""

    run: str | None = option(None, "Run folder of anas train (under torchrun write --run-dir: torchrun takes --run "
                                   "for itself).", aliases=("--run-dir",), short="-r",
                             default_text="the latest under ./runs with what the command needs")


@dataclass(frozen=True, kw_only=True)
class CalibrationOption:
    calib_batches: int | None = option(None, "Training batches for BN recalibration.", default_text="the run's",
                                       min=1)


@dataclass
class TrainedRun:
    run_dir: RunDir
    space: SearchSpace
    config: TrainConfig
    supernet: Supernet
    num_classes: int
    data_info: dict[str, Any] = field(default_factory=dict)  # class_names, mean, std
    device: torch.device = torch.device("cpu")

    @cached_property
    def data(self) -> DataSplits:
        """The run's dataset (same split, holdout and seed as in training)."""
        return load_data(updated(self.config, download=False).data_config(max(self.space.resolutions)))

    @property
    def label_free(self) -> bool:
        """Trained without labels: no trained classifier; subnets are measured by a linear probe."""
        return OBJECTIVES.get(self.config.objective).label_free

    @cached_property
    def checkpoint_id(self) -> str:
        """The checkpoint's identity: ``sha256:`` and the first 16 hex digits of its SHA-256."""
        digest = hashlib.sha256()
        with open(self.run_dir.checkpoint_path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return f"sha256:{digest.hexdigest()[:16]}"

    def calibration_batches(self):
        c = self.config
        return calibration_loader(self.data.calib, c.batch_size, c.seed, c.workers)

    def evaluation_batches(self, split: str = "val"):
        """``val``, ``holdout`` (the held-out part of the training split) or ``probe`` (the
        labelled images a label-free run's linear probes are fit on)."""
        dataset = {"holdout": self.data.holdout, "probe": self.data.probe}.get(split, self.data.val)
        if dataset is None:
            raise CheckpointError(f"run {self.run_dir.path} was trained without --holdout: no holdout split")
        return evaluation_loader(dataset, self.config.batch_size, self.config.workers)

    def evaluate(self, arch: Arch, calib_batches: int | None = None, split: str = "val") -> EvalResult:
        """Accuracy of ``arch`` after BN recalibration on training batches: of its
        classifier, or for a run trained without labels of a linear probe on its features."""
        calib, num_calib = self.calibration_batches(), calib_batches or self.config.calib_batches
        if self.data.probe is not None:
            return probe_subnet(self.supernet, arch, calib, num_calib, self.evaluation_batches("probe"),
                                self.evaluation_batches(split), self.device)
        return evaluate_subnet(self.supernet, arch, calib, num_calib, self.evaluation_batches(split), self.device)

    def extract(self, arch: Arch) -> StaticNet:
        """The static network of ``arch`` with the trained weights (BN not yet recalibrated)."""
        self.supernet.set_active(arch)
        return self.supernet.get_active_subnet().to(self.device)


def evaluated_weights(config: TrainConfig, state: dict[str, Any]) -> dict[str, Any]:
    """The supernet weights a run is evaluated with: the student's, or the mean teacher's
    for a run trained with ``--eval-weights teacher``."""
    if evaluates_teacher(config):
        return OBJECTIVES.get(config.objective).teacher_weights(config, state)
    return state["model"]


def load_trained_run(path: str | Path, device: str | torch.device = "cpu", data_dir: str | None = None) -> TrainedRun:
    """Load ``RUN_DIR/checkpoints/last.pt``; a missing, corrupt or mismatched checkpoint is a
    one-line ``CheckpointError``. ``data_dir`` replaces the run's data folder (the same
    data elsewhere, or the ImageNet folder of an imported supernet)."""
    run_dir = RunDir(path)
    state = run_dir.load_checkpoint()
    space = checkpoint_space(state, run_dir.checkpoint_path)
    config = saved_config(state["config"], str(run_dir.checkpoint_path))
    if data_dir is not None:
        config = updated(config, data_dir=str(data_dir))
    num_classes = int(state.get("num_classes") or space.num_classes)
    supernet = Supernet(space, num_classes, private_bn=config.private_bn)
    try:
        supernet.load_state_dict(evaluated_weights(config, state))
    except (RuntimeError, KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {run_dir.checkpoint_path} does not match its space: "
                              f"{one_line(exc)}") from None
    device = resolve_device(device) if isinstance(device, str) else device
    supernet.to(device).eval()
    return TrainedRun(run_dir, space, config, supernet, num_classes, dict(state.get("data") or {}), device)
