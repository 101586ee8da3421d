"""One subnet trained from scratch as a static network, with a supernet run's recipe.

The true accuracy of a subnet, which a supernet's ranking is measured against
(``anas standalone``). :class:`StandaloneTrainer` is the supernet's
:class:`~anas.train.loop.Trainer` (same data, augmentation, data order per seed,
optimizer, schedule, checkpoints and exact resume) with a freshly initialized
:class:`~anas.nn.static.StaticNet` in place of the supernet, and
:func:`~anas.train.step.standalone_step` (the largest subnet's part of the sandwich:
label loss with label smoothing, dropout and drop-connect) in place of the sandwich step.
A network evaluates with its own BN statistics, as any network trained alone does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from anas.errors import AnasError, CheckpointError
from anas.nn.evaluate import EvalResult, at_resolution, evaluate
from anas.nn.static import StaticNet
from anas.space.arch import Arch, arch_from_dict
from anas.space.cost import arch_costs
from anas.space.space import SearchSpace
from anas.train.config import TrainConfig
from anas.train.data import evaluation_loader
from anas.train.distributed import DistContext
from anas.train.loop import Trainer
from anas.train.rundir import STANDALONE_FORMAT, RunDir
from anas.train.step import StepLosses, StepParts, standalone_step


@dataclass(frozen=True)
class StandaloneResult:
    arch: Arch
    epochs: int
    seconds: float  # of training, in this process (0 when it had finished before)
    result: EvalResult  # on the validation split


class StandaloneTrainer(Trainer):
    """Train ``arch`` of ``space`` on its own; ``fit()`` returns a :class:`StandaloneResult`.
    A rank trains its subnet alone: the ``dist`` context defaults to a single process."""

    checkpoint_format = STANDALONE_FORMAT

    def __init__(self, config: TrainConfig, run_dir: RunDir, space: SearchSpace, arch: Arch,
                 resume_state: dict | None = None, progress: bool = True, on_epoch_end=None,
                 dist: DistContext | None = None):
        self.arch = arch  # read by build_model, which the base class calls
        super().__init__(config, run_dir, space, resume_state, progress, on_epoch_end,
                         dist=DistContext() if dist is None else dist)

    def describe(self) -> str:
        mflops, _ = arch_costs(self.space, self.arch, self.num_classes)
        return f"standalone subnet of space {self.space.name} ({mflops:.2f} MFLOPs)"

    def build_model(self) -> torch.nn.Module:
        config = self.config
        net = StaticNet(self.space, self.arch, self.num_classes)
        net.regularize(self.space.dropout if config.dropout is None else config.dropout, config.drop_connect,
                       config.drop_connect_stages)
        return net

    def build_parts(self) -> StepParts:
        return StepParts(**self._optimization())

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepLosses:
        return standalone_step(self.parts, images, labels, self.arch.resolution)

    def plugin_state(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict()}

    def load_plugin_state(self, state: dict[str, Any]) -> None:
        """Nothing to restore: which subnet the checkpoint holds is checked before (``train_standalone``)."""

    def evaluate_now(self) -> dict[str, EvalResult]:
        config = self.config
        batches = evaluation_loader(self.data.val, config.batch_size, config.workers)
        return {"subnet": evaluate(self.model, at_resolution(batches, self.arch.resolution), self.device)}

    def _summary(self, seconds: float, total_images: int, final: dict[str, EvalResult]) -> StandaloneResult:
        self.run_dir.log(f"finished: acc1 {final['subnet'].acc1:.2f}")
        return StandaloneResult(self.arch, self.epoch, seconds if total_images else 0.0, final["subnet"])


def train_standalone(config: TrainConfig, space: SearchSpace, arch: Arch, folder: str | Path, progress: bool = False,
                     on_epoch_end=None) -> StandaloneResult:
    """Train ``arch`` on its own in ``folder`` with ``config`` (a supernet run's, with the
    epochs and seed wanted), continuing from the folder's checkpoint when it has one."""
    run_dir = RunDir(folder)
    # a network trained on its own learns from the labels with every weight, one view per
    # image; private BNs, teachers and label-free objectives are a supernet's
    config = replace(config, run_dir=str(run_dir.path), train_only="all", private_bn=False, init=None,
                     objective="supervised", teacher="none", ema_momentum=None, cross_path=False,
                     eval_weights="student", queue_size=None, temperature=None)
    state = None
    if run_dir.has_checkpoint():
        state = run_dir.load_checkpoint(checkpoint_format=STANDALONE_FORMAT)
        try:
            same_subnet = arch_from_dict(space, state.get("arch")) == arch
        except AnasError:
            same_subnet = False
        if not same_subnet:
            raise CheckpointError(f"{run_dir.path} holds the training of another subnet: choose another --out")
        saved = state.get("config") or {}
        for option in ("epochs", "seed"):
            if saved.get(option) != getattr(config, option):
                raise AnasError(f"{run_dir.path} holds a subnet trained with --{option} {saved.get(option)}, "
                                f"not {getattr(config, option)}: choose another --out")
    try:
        trainer = StandaloneTrainer(config, run_dir, space, arch, resume_state=state, progress=progress,
                                    on_epoch_end=on_epoch_end)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot continue the subnet in {run_dir.path}: {exc}") from None
    return trainer.fit()

