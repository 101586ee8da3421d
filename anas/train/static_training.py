"""One subnet trained from scratch as a static network, with a supernet run's recipe.

The true accuracy of a subnet, which a supernet's ranking is measured against (``anas
standalone``). It is the supernet's loop (:func:`anas.train.loop.fit`: same data,
augmentation, data order per seed, optimizer, schedule, checkpoints and exact resume) fitting
another :class:`~anas.train.loop.Trainee`: a freshly initialized
:class:`~anas.nn.static.StaticNet` and :func:`~anas.train.step.standalone_step` (the
largest subnet's part of the sandwich: label loss with label smoothing, dropout and
drop-connect). A network evaluates with its own BN statistics, as any network trained
alone does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from anas.checks import check_seed
from anas.data import evaluation_loader
from anas.errors import AnasError, CheckpointError
from anas.nn.accuracy import EvalResult, at_resolution, evaluate
from anas.nn.static import StaticNet
from anas.options import check_unchanged, option, updated
from anas.runtime.distributed import DistContext
from anas.runtime.rundir import STANDALONE_FORMAT, RunDir
from anas.space.arch import Arch, arch_from_dict
from anas.space.cost import arch_costs
from anas.space.search_space import SearchSpace
from anas.train.config import TrainConfig
from anas.train.loop import Trainee, fit, optimization, placed, set_up, trainable_parameters
from anas.train.step import StepParts, standalone_step


@dataclass(frozen=True, kw_only=True)
class SubnetTrainingOptions:
    """How long and with which seed subnets are trained alone: a subnet's folder keeps them."""

    epochs: int | None = option(None, "Epochs of each stand-alone training.", default_text="the run's", min=1,
                                fixed_on_resume=True)
    seed: int = option(0, "Seed of the stand-alone trainings (weights, data order).", check=check_seed,
                       fixed_on_resume=True)


@dataclass(frozen=True)
class StandaloneResult:
    arch: Arch
    epochs: int
    seconds: float  # of training, in this process (0 when it had finished before)
    result: EvalResult  # on the validation split


def standalone_config(config: TrainConfig, run_dir: RunDir) -> TrainConfig:
    """A supernet run's configuration as a network trained on its own takes it: it learns
    from the labels with every weight, one view per image (private BNs, teachers and
    label-free objectives are a supernet's; their plug-ins' options are left out)."""
    return updated(config, run_dir=str(run_dir.path), train_only="all", private_bn=False, init=None,
                   objective="supervised", teacher="none", regularizer=["kd"])


def static_trainee(config: TrainConfig, run_dir: RunDir, space: SearchSpace, arch: Arch) -> Trainee:
    """The static network of ``arch``, freshly initialized, with the run's recipe; one
    process trains it (a rank of a ``torchrun`` job trains its own subnet)."""
    setup = set_up(config, run_dir, space, dist=DistContext())
    torch.manual_seed(config.seed)
    net = StaticNet(space, arch, setup.num_classes)
    net.regularize(space.dropout if config.dropout is None else config.dropout, config.drop_connect,
                   config.drop_connect_stages)
    net = placed(net, setup)
    notes = (trainable_parameters(net, config.train_only),)
    parts = StepParts(**optimization(setup, net))

    def evaluate_alone() -> dict[str, EvalResult]:
        batches = evaluation_loader(setup.data.val, config.batch_size, config.workers)
        return {"subnet": evaluate(net, at_resolution(batches, arch.resolution), setup.device)}

    mflops, _ = arch_costs(space, arch, setup.num_classes)
    return Trainee(setup, net, parts, lambda images, labels, index: standalone_step(parts, images, labels,
                                                                                     arch.resolution),
                   evaluate_alone, f"standalone subnet of space {space.name} ({mflops:.2f} MFLOPs)",
                   checkpoint_format=STANDALONE_FORMAT, plugin_state=lambda: {"arch": arch.to_dict()}, notes=notes)


def train_standalone(config: TrainConfig, space: SearchSpace, arch: Arch, folder: str | Path, progress: bool = False,
                     on_epoch_end=None) -> StandaloneResult:
    """Train ``arch`` on its own in ``folder`` with ``config`` (a supernet run's, with the
    epochs and seed wanted), continuing from the folder's checkpoint when it has one."""
    run_dir = RunDir(folder)
    config = standalone_config(config, run_dir)
    state = None
    if run_dir.has_checkpoint():
        state = run_dir.load_checkpoint(checkpoint_format=STANDALONE_FORMAT)
        try:
            same_subnet = arch_from_dict(space, state.get("arch")) == arch
        except AnasError:
            same_subnet = False
        if not same_subnet:
            raise CheckpointError(f"{run_dir.path} holds the training of another subnet: choose another --out")
        check_unchanged(SubnetTrainingOptions, state.get("config") or {}, config.to_dict(),
                        f"the subnet in {run_dir.path}", "choose another --out")
    try:
        fitted = fit(static_trainee(config, run_dir, space, arch), state, progress, on_epoch_end)
    except CheckpointError as exc:
        raise CheckpointError(f"cannot continue the subnet in {run_dir.path}: {exc}") from None
    run_dir.log(f"finished: acc1 {fitted.final['subnet'].acc1:.2f}")
    return StandaloneResult(arch, fitted.epochs, fitted.seconds if fitted.images else 0.0, fitted.final["subnet"])
