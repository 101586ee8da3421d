"""Supernet training, from one CPU to many GPUs, in functions that read top to bottom.

A run is set up once (:func:`set_up`: the device, the processes of a ``torchrun`` job,
the data), then what it trains is built (:func:`supernet_trainee`: the supernet, the
objective, sampler and regularizers, the optimizer and schedule), then :func:`fit` runs
the epochs: the objective's step on every batch (by default the sandwich rule,
:func:`~anas.train.step.sandwich_step`), evaluation of the smallest and the largest
subnet, metrics, and checkpoints with every random state, so that a resumed run is bit
for bit the uninterrupted one. Stand-alone training of one subnet
(:mod:`anas.train.static_training`) fits another model and step with the same loop.
``start_training`` and ``resume_training`` are the entry points.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from anas.data import DataSplits, Views, calibration_loader, evaluation_loader, load_data, make_loader
from anas.errors import AnasError, CheckpointError, one_line
from anas.io import read_yaml
from anas.nn.accuracy import EvalResult, evaluate_subnet
from anas.nn.probe import probe_subnet
from anas.nn.supernet import Supernet
from anas.options import check_unchanged, to_yaml, values_from_config
from anas.progress import progress_bars
from anas.runtime.device import resolve_device
from anas.runtime.distributed import (
    DistContext,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_parameters,
    init_distributed,
    process_group,
)
from anas.runtime.rundir import (
    CHECKPOINT_FORMAT,
    RunDir,
    capture_rng_state,
    checkpoint_space,
    initialize_from_run,
    restore_rng_state,
)
from anas.space.arch import Arch, largest_arch, smallest_arch
from anas.space.cost import arch_costs
from anas.space.schema import load_space, space_to_dict
from anas.space.search_space import SearchSpace
from anas.train.config import RETIRED_OPTIONS, TrainConfig, build_config, config_from_mapping, saved_config
from anas.train.estimators import EstimatorContext, build_estimator
from anas.train.objectives import ObjectiveContext, build_objective
from anas.train.recipe import autocast_factory, freeze_all_but, parameter_groups, warmup_cosine
from anas.train.regularizers import RegularizerContext, build_regularizers
from anas.train.regularizers.teacher import cross_path, evaluates_teacher
from anas.train.samplers import SamplerContext, build_sampler
from anas.train.step import SandwichParts, StepLosses, StepParts


@dataclass
class RunSetup:
    """What every run starts from: its configuration, folder and space, the device, the
    processes of a ``torchrun`` job and the data."""

    config: TrainConfig
    run_dir: RunDir
    space: SearchSpace
    device: torch.device
    dist: DistContext
    data: DataSplits
    num_classes: int
    steps_per_epoch: int

    def train_batches(self, epoch: int, views: int = 1):
        """The ``epoch``'s training batches of this rank (``views`` augmented views per image)."""
        config = self.config
        train = Views(self.data.train, views) if views > 1 else self.data.train
        return make_loader(train, config.batch_size, shuffle=True, seed=config.seed, epoch=epoch,
                           workers=config.workers, drop_last=True, rank=self.dist.rank,
                           world_size=self.dist.world_size)

    def heldout_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``index``-th batch of the held-out training images, cycling through them in
        order (the same on every rank; a resumed run asks for the same ones)."""
        data = self.data.holdout
        size = min(self.config.batch_size, len(data))
        start = index * size % len(data)
        images, labels = zip(*(data[(start + j) % len(data)] for j in range(size)))
        return torch.stack(images).to(self.device), torch.as_tensor(labels).to(self.device)


def set_up(config: TrainConfig, run_dir: RunDir, space: SearchSpace, dist: DistContext | None = None) -> RunSetup:
    """The device (each process of a CUDA job on its own GPU), the job's processes
    (``dist``: a rank training on its own; default: the ``torchrun`` job's) and the data."""
    device = resolve_device(config.device)
    dist = init_distributed(device.type) if dist is None else dist
    device = dist.device_for(device)
    data = load_data(config.data_config(max(space.resolutions)))
    num_classes = config.num_classes or data.num_classes
    if num_classes < data.num_classes:
        raise AnasError(f"--num-classes {num_classes} is below the {data.num_classes} classes of the data")
    setup = RunSetup(config, run_dir, space, device, dist, data, num_classes, 0)
    setup.steps_per_epoch = len(setup.train_batches(0))
    if setup.steps_per_epoch == 0:
        raise AnasError(f"the training split has fewer images than one batch ({config.batch_size})")
    return setup


@dataclass
class Trainee:
    """What :func:`fit` trains and how: a model, its optimizer and schedule (``parts``), one
    step, what an evaluation measures, and the state of its plug-ins in a checkpoint."""

    setup: RunSetup
    model: torch.nn.Module
    parts: StepParts
    step: Callable[[torch.Tensor, torch.Tensor, int], StepLosses]  # (images, labels, global step)
    evaluate: Callable[[], dict[str, EvalResult]]
    describe: str  # what is trained, in train.log
    checkpoint_format: str = CHECKPOINT_FORMAT
    views: int = 1  # augmented views of each image per step
    plugin_state: Callable[[], dict[str, Any]] = dict
    load_plugin_state: Callable[[dict[str, Any]], None] = lambda state: None
    epoch_end: Callable[[RunDir], dict[str, Any]] | None = None  # a plug-in's files and numbers per epoch (rank 0)
    notes: tuple[str, ...] = ()  # more for train.log: where the weights came from, what trains
    plugins: dict[str, Any] = field(default_factory=dict)  # the plug-ins built for it, by kind (to inspect)


def optimization(setup: RunSetup, model: torch.nn.Module, extra_modules: list[torch.nn.Module] = ()) -> dict[str, Any]:
    """The :class:`StepParts` of the recipe (REFERENCE section 4): SGD with the learning
    rate scaled by the global batch, warm-up and cosine schedule, mixed precision, ranks,
    clipping. The optimizer trains ``model`` and ``extra_modules`` (an objective's)."""
    config = setup.config
    world_batch = config.batch_size * setup.dist.world_size
    trained = torch.nn.ModuleList([model, *extra_modules]) if extra_modules else model
    optimizer = torch.optim.SGD(parameter_groups(trained, config.weight_decay), lr=config.lr * world_batch / 256,
                                momentum=config.momentum, nesterov=config.nesterov)
    total = setup.steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, round(config.warmup_epochs * setup.steps_per_epoch)))
    return dict(model=model, optimizer=optimizer, scheduler=scheduler,
                scaler=torch.amp.GradScaler("cuda", enabled=config.amp == "fp16"),
                autocast=autocast_factory(config.amp, setup.device), dist=setup.dist,
                label_smoothing=config.label_smoothing, grad_clip=config.grad_clip)


def placed(model: torch.nn.Module, setup: RunSetup) -> torch.nn.Module:
    """``model`` on the run's device (channels-last with ``--channels-last``)."""
    model = model.to(setup.device)
    return model.to(memory_format=torch.channels_last) if setup.config.channels_last else model


def supernet_trainee(setup: RunSetup, initialize: bool = True) -> Trainee:
    """The supernet of a run with its plug-ins (objective, sampler, regularizers) and the
    recipe's optimizer; ``initialize``: start from ``--init``'s weights when given."""
    config, space, dist = setup.config, setup.space, setup.dist
    torch.manual_seed(config.seed)
    supernet = Supernet(space, setup.num_classes, private_bn=config.private_bn)
    notes = []
    if config.init and initialize:
        reinitialized = initialize_from_run(supernet, config.init, space)
        notes.append(f"weights from {config.init}"
                     + (", classifier re-initialized for the new class count" if reinitialized else ""))
    supernet = placed(supernet, setup)
    notes.insert(0, trainable_parameters(supernet, config.train_only))
    broadcast_parameters(supernet, dist)

    # the plug-ins, each with its own options
    total_steps = setup.steps_per_epoch * config.epochs
    autocast = autocast_factory(config.amp, setup.device)
    objective = build_objective(config.objective, ObjectiveContext(
        space, config, supernet, total_steps, len(setup.data.train), dist, config.options_for("objective")))
    estimator_context = EstimatorContext(space, config, supernet, lambda t: all_reduce_mean(t, dist), autocast,
                                         config.options_for("estimator"))
    sampler = build_sampler(config.sampler, SamplerContext(
        space, config, setup.num_classes, lambda: build_estimator(config.estimator, estimator_context),
        setup.steps_per_epoch, setup.heldout_batch if setup.data.holdout is not None else None,
        config.options_for("sampler")))
    regularizers = (build_regularizers(config, RegularizerContext(space, config, supernet, total_steps, autocast))
                    if objective.uses_regularizers else [])
    parts = SandwichParts(
        **optimization(setup, supernet, objective.modules()), sampler=sampler, regularizers=regularizers,
        largest=largest_arch(space), smallest=smallest_arch(space), num_middle=config.num_subnets - 2,
        dropout=space.dropout if config.dropout is None else config.dropout, drop_connect=config.drop_connect,
        drop_connect_stages=config.drop_connect_stages, space=space, cross_path=cross_path(config))

    evaluated = objective.teacher_model(parts) if evaluates_teacher(config) else supernet

    def evaluate() -> dict[str, EvalResult]:
        return {"smallest": evaluate_supernet(setup, evaluated, parts.smallest),
                "largest": evaluate_supernet(setup, evaluated, parts.largest)}

    def plugin_state() -> dict[str, Any]:
        return {"sampler": sampler.state_dict(), "regularizers": [r.state_dict() for r in regularizers],
                "objective": objective.state_dict()}

    def load_plugin_state(state: dict[str, Any]) -> None:
        sampler.load_state_dict(state["sampler"])
        for regularizer, saved in zip(regularizers, state.get("regularizers", [])):
            regularizer.load_state_dict(saved)
        objective.load_state_dict(state.get("objective", {}))

    return Trainee(setup, supernet, parts, lambda images, labels, index: objective.step(parts, images, labels, index),
                   evaluate, f"supernet of space {space.name}, sampler {config.sampler}",
                   views=objective.views(config), plugin_state=plugin_state, load_plugin_state=load_plugin_state,
                   epoch_end=getattr(sampler, "epoch_end", None), notes=tuple(notes),
                   plugins={"objective": objective, "sampler": sampler, "regularizers": regularizers})


def trainable_parameters(model: torch.nn.Module, train_only: str) -> str:
    """Let only the parameters ``--train-only`` names train; what train.log says of it."""
    trainable = freeze_all_but(model, train_only)
    total = sum(p.numel() for p in model.parameters())
    return (f"{trainable:,} of {total:,} parameters trainable"
            + ("" if train_only == "all" else f" (--train-only {train_only})"))


def evaluate_supernet(setup: RunSetup, supernet: Supernet, arch: Arch) -> EvalResult:
    """``arch``'s accuracy: every rank recalibrates BN on the same training batches,
    evaluates its shard of the validation split, and the tallies are summed over ranks. A
    label-free run's subnets are measured by a linear probe instead, each rank fitting
    the same one."""
    config, dist, data = setup.config, setup.dist, setup.data
    calib = calibration_loader(data.calib, config.batch_size, config.seed, config.workers)
    if data.probe is not None:
        return probe_subnet(supernet, arch, calib, config.calib_batches,
                            evaluation_loader(data.probe, config.batch_size, config.workers),
                            evaluation_loader(data.val, config.batch_size, config.workers), setup.device)
    val = evaluation_loader(data.val, config.batch_size, config.workers, dist.rank, dist.world_size)
    return evaluate_subnet(supernet, arch, calib, config.calib_batches, val, setup.device,
                           lambda tally: all_reduce_sum(tally, dist))


# ----------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------


@dataclass
class Position:
    """Where a run stands: epochs done, steps into the current epoch, steps in all."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


@dataclass
class Fitted:
    """What :func:`fit` returns on the main process."""

    epochs: int
    seconds: float  # of training, in this process
    images: int  # trained on, over all ranks, in this process
    final: dict[str, EvalResult]  # the last evaluation


@dataclass
class EpochStats:
    loss_largest: float = 0.0
    loss_distill: float = 0.0  # the other subnets' mean loss (in-place distillation by default)
    steps: int = 0
    images: int = 0
    seconds: float = 0.0

    def add(self, losses: StepLosses, images: int) -> None:
        self.loss_largest += losses.largest
        self.loss_distill += losses.others
        self.steps += 1
        self.images += images

    def row(self, position: Position, lr: float) -> dict[str, Any]:
        """The epoch's row of metrics.csv."""
        return {"epoch": position.epoch, "step": position.global_step, "lr": lr,
                "loss_largest": self.loss_largest / max(self.steps, 1),
                "loss_distill": self.loss_distill / max(self.steps, 1),
                "images_per_second": self.images / max(self.seconds, 1e-9), "seconds": self.seconds}


def fit(trainee: Trainee, resume_state: dict | None = None, progress: bool = True,
        on_epoch_end: Callable[[int, dict], None] | None = None, process_notes: tuple[str, ...] = ()) -> Fitted | None:
    """Train ``trainee`` to the end of its schedule, from ``resume_state`` (a checkpoint)
    when given; ``process_notes`` are process-wide settings the caller made (the command
    line's), written to train.log. What it did on the main process, None elsewhere."""
    setup = trainee.setup
    config, run_dir, dist = setup.config, setup.run_dir, setup.dist
    position, metrics, saved_rng = Position(), [], None
    if resume_state is not None:
        saved_rng = restore(trainee, position, resume_state)
        metrics = [row for row in run_dir.read_metrics() if int(row["epoch"]) <= position.epoch]
    if dist.is_main:
        run_dir.write_config(to_yaml(config))
        begun = f"resumed at epoch {position.epoch}" if position.global_step else "started"
        run_dir.log(", ".join([f"{begun}: {trainee.describe}", f"data {config.data}",
                               f"{dist.world_size} process(es) on {setup.device.type}", *trainee.notes,
                               f"{setup.steps_per_epoch} steps per epoch", *process_notes]))
    start, images_seen, last_eval = time.perf_counter(), 0, None
    with process_group(dist), progress_bars(progress and dist.is_main) as bars:
        while position.epoch < config.epochs:
            # the epoch's steps (resuming inside an epoch: skip the batches done, then
            # take up the random state the checkpoint saved)
            batches = iter(setup.train_batches(position.epoch, trainee.views))
            for _ in range(position.step_in_epoch):
                next(batches)
            if saved_rng is not None:
                restore_rng_state(saved_rng)
                saved_rng = None
            bar = bars.add(f"epoch {position.epoch + 1}/{config.epochs}", setup.steps_per_epoch,
                           position.step_in_epoch)
            stats, tick = EpochStats(), time.perf_counter()
            for images, labels in batches:
                images, labels = on_device(images, labels, setup)
                losses = trainee.step(images, labels, position.global_step)
                stats.add(losses, images.shape[0] * dist.world_size)
                position.step_in_epoch += 1
                position.global_step += 1
                rate = stats.images / max(time.perf_counter() - tick, 1e-9)
                bar.advance(note=f"loss {losses.largest:.3f}  lr {learning_rate(trainee):.4f}  {rate:,.0f} img/s")
                if (config.save_every and position.global_step % config.save_every == 0
                        and position.step_in_epoch < setup.steps_per_epoch):
                    save(trainee, position)
            stats.seconds = time.perf_counter() - tick
            images_seen += stats.images
            position.epoch, position.step_in_epoch = position.epoch + 1, 0

            # evaluation (every rank, each on its shard of the validation split), metrics, checkpoint
            row = stats.row(position, learning_rate(trainee))
            if config.eval_every and (position.epoch % config.eval_every == 0 or position.epoch == config.epochs):
                last_eval = (position.epoch, trainee.evaluate())
                row.update({f"acc1_{name}": result.acc1 for name, result in last_eval[1].items()})
            if dist.is_main:
                if trainee.epoch_end is not None:  # e.g. fpnas: its distribution and its numbers
                    row.update(trainee.epoch_end(run_dir))
                metrics.append(row)
                run_dir.write_metrics(metrics)
                run_dir.log(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
            save(trainee, position)
            if on_epoch_end is not None:
                on_epoch_end(position.epoch, row)

        # the last evaluation: the last epoch's, else measured now (every rank takes part)
        seconds = time.perf_counter() - start
        final = last_eval[1] if last_eval and last_eval[0] == position.epoch else trainee.evaluate()
    return Fitted(position.epoch, seconds, images_seen, final) if dist.is_main else None


def on_device(images: torch.Tensor, labels: torch.Tensor, setup: RunSetup) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch on the run's device (channels-last with ``--channels-last``; stacked views
    stay as they come)."""
    images = images.to(setup.device, non_blocking=True)
    labels = labels.to(setup.device, non_blocking=True)
    if setup.config.channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def learning_rate(trainee: Trainee) -> float:
    return float(trainee.parts.optimizer.param_groups[0]["lr"])


# ----------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------


def checkpoint_state(trainee: Trainee, position: Position) -> dict[str, Any]:
    """Everything a resumed run needs to continue bit for bit."""
    setup, parts = trainee.setup, trainee.parts
    data = setup.data
    return {
        "space": space_to_dict(setup.space),
        "config": setup.config.to_dict(),
        "model": trainee.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "scaler": parts.scaler.state_dict(),
        **asdict(position),
        "rng": capture_rng_state(),
        **trainee.plugin_state(),
        "num_classes": setup.num_classes,
        "data": {"name": setup.config.data, "num_classes": data.num_classes, "class_names": list(data.class_names),
                 "mean": list(data.mean), "std": list(data.std)},
    }


def save(trainee: Trainee, position: Position) -> None:
    """Rank 0 writes the checkpoint (atomically); the ranks wait for it."""
    setup = trainee.setup
    if setup.dist.is_main:
        setup.run_dir.save_checkpoint(checkpoint_state(trainee, position), trainee.checkpoint_format)
    barrier(setup.dist)


def restore(trainee: Trainee, position: Position, state: dict[str, Any]) -> dict:
    """Load a checkpoint into ``trainee`` and ``position``; returns its random state, which
    the loop takes up once it has skipped the batches done."""
    parts = trainee.parts
    try:
        trainee.model.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        parts.scheduler.load_state_dict(state["scheduler"])
        parts.scaler.load_state_dict(state["scaler"])
        trainee.load_plugin_state(state)
        position.epoch, position.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        position.global_step = int(state["global_step"])
        return state["rng"]
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {trainee.setup.run_dir.checkpoint_path} does not match this run: "
                              f"{one_line(exc)}") from None


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------


@dataclass
class TrainSummary:
    run_dir: str
    epochs: int
    seconds: float
    images_per_second: float
    smallest: dict[str, Any] = field(default_factory=dict)
    largest: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_supernet(config: TrainConfig, run_dir: RunDir, space: SearchSpace, resume_state: dict | None = None,
                   progress: bool = True, on_epoch_end: Callable[[int, dict], None] | None = None,
                   process_notes: tuple[str, ...] = ()) -> TrainSummary | None:
    """Set the run up, build its supernet and plug-ins, fit; the summary on the main
    process, None elsewhere."""
    trainee = supernet_trainee(set_up(config, run_dir, space), initialize=resume_state is None)
    fitted = fit(trainee, resume_state, progress, on_epoch_end, process_notes)
    if fitted is None:
        return None
    summary = TrainSummary(str(run_dir.path), fitted.epochs, fitted.seconds,
                           fitted.images / max(fitted.seconds, 1e-9))
    for name, arch in (("smallest", smallest_arch(space)), ("largest", largest_arch(space))):
        mflops, params_m = arch_costs(space, arch, trainee.setup.num_classes)
        getattr(summary, name).update(arch=arch.to_dict(), mflops=mflops, params_m=params_m,
                                      **fitted.final[name].to_dict())
    run_dir.log(f"finished: smallest acc1 {summary.smallest['acc1']:.2f}, largest acc1 {summary.largest['acc1']:.2f}")
    return summary


def start_training(overrides: dict[str, Any], config_file: str | None = None, progress: bool = True,
                   on_epoch_end: Callable[[int, dict], None] | None = None,
                   process_notes: tuple[str, ...] = ()) -> TrainSummary | None:
    """A new run: defaults, then ``config_file``, then the given options."""
    config = build_config(values_from_config(TrainConfig, overrides, config_file, RETIRED_OPTIONS))
    space = load_space(config.space)
    run_dir = RunDir(config.run_dir or config.default_run_dir())
    if run_dir.has_checkpoint():
        raise AnasError(f"run folder {run_dir.path} already holds a checkpoint: continue it with "
                        f"--resume {run_dir.path} or choose another --run-dir")
    config = replace(config, run_dir=str(run_dir.path))
    return train_supernet(config, run_dir, space, progress=progress, on_epoch_end=on_epoch_end,
                          process_notes=process_notes)


def resume_training(path: str, overrides: dict[str, Any], progress: bool = True,
                    on_epoch_end: Callable[[int, dict], None] | None = None,
                    process_notes: tuple[str, ...] = ()) -> TrainSummary | None:
    """Continue the run in ``path`` from its last checkpoint; given options override the
    run's configuration (for example a larger ``epochs``), except those a run keeps (its
    space, and the options declared ``fixed_on_resume``)."""
    run_dir = RunDir(path)
    state = run_dir.load_checkpoint()
    space = checkpoint_space(state, run_dir.checkpoint_path)
    saved = saved_config(state["config"], str(run_dir.checkpoint_path)).to_dict()
    requested_space = overrides.get("space")
    if requested_space is not None and load_space(requested_space) != space:
        raise CheckpointError(f"checkpoint {run_dir.checkpoint_path} is of space {space.name}, "
                              f"not {requested_space}")
    if run_dir.config_path.is_file():
        on_disk = config_from_mapping(read_yaml(run_dir.config_path, "config file"), str(run_dir.config_path),
                                      lenient=True)
        if on_disk.get("space") not in (None, saved["space"]):
            raise CheckpointError(f"checkpoint {run_dir.checkpoint_path} is of space {space.name}, but "
                                  f"{run_dir.config_path} names space {on_disk.get('space')}")
    config = build_config({**overrides, "space": saved["space"], "run_dir": str(run_dir.path)}, saved)
    check_unchanged(TrainConfig, saved, config.to_dict(), f"run {run_dir.path}", "start a new run")
    return train_supernet(config, run_dir, space, resume_state=state, progress=progress, on_epoch_end=on_epoch_end,
                          process_notes=process_notes)

