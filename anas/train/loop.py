"""Supernet training, from one CPU to many GPUs: the run around the sandwich step.

:class:`Trainer` sets a run up (data, supernet, optimizer, schedule, sampler,
regularizers, objective), runs epochs of the objective's step (by default the sandwich
rule, :func:`~anas.train.step.sandwich_step`), and keeps the books:
metrics, checkpoints (with every random state, so a resumed run is bit for bit the
uninterrupted one), evaluation of the smallest and largest subnet, progress.
``start_training`` and ``resume_training`` are the entry points.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from anas.device import resolve_device
from anas.errors import AnasError, CheckpointError, one_line
from anas.nn.evaluate import EvalResult, evaluate_subnet
from anas.nn.probe import probe_subnet
from anas.nn.supernet import Supernet
from anas.progress import Bars, progress_bars
from anas.space.arch import Arch, largest_arch, smallest_arch
from anas.space.cost import arch_costs
from anas.space.schema import load_space, space_to_dict
from anas.space.space import SearchSpace
from anas.train.config import TrainConfig, build_config, config_from_mapping, read_config_file
from anas.train.data import (
    DataSplits,
    Views,
    calibration_loader,
    evaluation_loader,
    load_data,
    make_loader,
)
from anas.train.distributed import (
    DistContext,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    broadcast_parameters,
    init_distributed,
    process_group,
)
from anas.train.estimators import EstimatorContext, build_estimator
from anas.train.objectives import OBJECTIVES, ObjectiveContext, build_objective
from anas.train.recipe import autocast_factory, freeze_all_but, parameter_groups, warmup_cosine
from anas.train.regularizers import RegularizerContext, build_regularizers
from anas.train.rundir import (
    CHECKPOINT_FORMAT,
    RunDir,
    capture_rng_state,
    checkpoint_space,
    initialize_from_run,
    restore_rng_state,
)
from anas.train.samplers import SamplerContext, build_sampler
from anas.train.step import SandwichParts, StepLosses, StepParts


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


class Trainer:
    """One run: ``fit()`` trains it to the end of its schedule. ``process_notes`` are
    process-wide settings the caller made (the command line's), written to train.log;
    ``dist`` replaces the ``torchrun`` job's context (a rank training on its own).

    What is trained is a supernet with the sandwich rule; a subclass changes it by
    overriding ``describe``, ``build_model``, ``build_parts``, ``train_step``, ``plugin_state`` /
    ``load_plugin_state``, ``evaluate_now`` and ``_summary`` (see
    :mod:`anas.train.standalone`)."""

    checkpoint_format = CHECKPOINT_FORMAT

    def __init__(self, config: TrainConfig, run_dir: RunDir, space: SearchSpace, resume_state: dict | None = None,
                 progress: bool = True, on_epoch_end: Callable[[int, dict], None] | None = None,
                 process_notes: tuple[str, ...] = (), dist: DistContext | None = None):
        self.config = config
        self.run_dir = run_dir
        self.space = space
        self.progress_enabled = progress
        self.on_epoch_end = on_epoch_end
        self.process_notes = process_notes
        self.device = resolve_device(config.device, allow_auto=True)
        self.autocast = autocast_factory(config.amp, self.device)
        self.dist: DistContext = init_distributed(self.device.type) if dist is None else dist
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.data: DataSplits = load_data(config.data_config(max(space.resolutions)))
        self.num_classes = config.num_classes or self.data.num_classes
        if self.num_classes < self.data.num_classes:
            raise AnasError(f"--num-classes {self.num_classes} is below the {self.data.num_classes} classes of the data")
        torch.manual_seed(config.seed)
        self.model = self.build_model()
        self.init_note = self._initialize_weights() if config.init and resume_state is None else ""
        self.model = self.model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.trainable = freeze_all_but(self.model, config.train_only)  # how many values train
        broadcast_parameters(self.model, self.dist)
        self.steps_per_epoch = len(self._train_loader(0))
        if self.steps_per_epoch == 0:
            raise AnasError(f"the training split has fewer images than one batch ({config.batch_size})")
        self.parts = self.build_parts()
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.metrics: list[dict[str, Any]] = []
        self.last_eval: tuple[int, dict[str, EvalResult]] | None = None
        self._rng_after_skip: dict | None = None
        if resume_state is not None:
            self._load_state(resume_state)

    # -- what is trained, and how (a subclass overrides these) ---------------------------

    def describe(self) -> str:
        """What is trained, in train.log."""
        return f"supernet of space {self.space.name}, sampler {self.config.sampler}"

    def build_model(self) -> torch.nn.Module:
        return Supernet(self.space, self.num_classes, private_bn=self.config.private_bn)

    def build_parts(self) -> StepParts:
        """The parts of a supernet's step; builds the run's objective (``self.objective``) too."""
        config, space, model = self.config, self.space, self.model
        total_steps = self.steps_per_epoch * config.epochs
        self.objective = build_objective(config.objective, ObjectiveContext(
            space, config, model, total_steps, len(self.data.train), self.dist))
        estimator_context = EstimatorContext(space, config, model, lambda t: all_reduce_mean(t, self.dist),
                                             self.autocast)
        sampler = build_sampler(config.sampler, SamplerContext(
            space, config, self.num_classes, lambda: build_estimator(config.estimator, estimator_context),
            self.steps_per_epoch, self._heldout_batch if self.data.holdout is not None else None))
        return SandwichParts(
            **self._optimization(self.objective.modules()), sampler=sampler,
            regularizers=build_regularizers(self.objective.regularizer_names(config), RegularizerContext(
                space, config, model, total_steps, self.autocast)),
            largest=largest_arch(space), smallest=smallest_arch(space), num_middle=config.num_subnets - 2,
            dropout=space.dropout if config.dropout is None else config.dropout,
            drop_connect=config.drop_connect, drop_connect_stages=config.drop_connect_stages,
            space=space, cross_path=config.cross_path,
        )

    def _optimization(self, extra_modules: list[torch.nn.Module] = ()) -> dict[str, Any]:
        """The :class:`StepParts` of the recipe: SGD with the learning rate scaled by the
        global batch, warm-up and cosine schedule, mixed precision, ranks, clipping. The
        optimizer trains the model and ``extra_modules`` (an objective's)."""
        config = self.config
        world_batch = config.batch_size * self.dist.world_size
        trained = torch.nn.ModuleList([self.model, *extra_modules]) if extra_modules else self.model
        optimizer = torch.optim.SGD(parameter_groups(trained, config.weight_decay),
                                    lr=config.lr * world_batch / 256, momentum=config.momentum,
                                    nesterov=config.nesterov)
        total = self.steps_per_epoch * config.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(total, round(config.warmup_epochs * self.steps_per_epoch)))
        return dict(model=self.model, optimizer=optimizer, scheduler=scheduler,
                    scaler=torch.amp.GradScaler("cuda", enabled=config.amp == "fp16"), autocast=self.autocast,
                    dist=self.dist, label_smoothing=config.label_smoothing, grad_clip=config.grad_clip)

    def _initialize_weights(self) -> str:
        """Start from the weights of ``--init``; returns what train.log says of it."""
        kept = initialize_from_run(self.model, self.config.init, self.space)
        fresh = ", classifier re-initialized for the new class count" if kept else ""
        return f", weights from {self.config.init}{fresh}"

    def _trainable_text(self) -> str:
        total = sum(p.numel() for p in self.model.parameters())
        only = "" if self.config.train_only == "all" else f" (--train-only {self.config.train_only})"
        return f"{self.trainable:,} of {total:,} parameters trainable{only}"

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> StepLosses:
        return self.objective.step(self.parts, images, labels, self.global_step)

    def plugin_state(self) -> dict[str, Any]:
        """The states of the sampler, the regularizers and the objective, for the checkpoint."""
        return {"sampler": self.parts.sampler.state_dict(),
                "regularizers": [regularizer.state_dict() for regularizer in self.parts.regularizers],
                "objective": self.objective.state_dict()}

    def load_plugin_state(self, state: dict[str, Any]) -> None:
        self.parts.sampler.load_state_dict(state["sampler"])
        for regularizer, saved in zip(self.parts.regularizers, state.get("regularizers", [])):
            regularizer.load_state_dict(saved)
        self.objective.load_state_dict(state.get("objective", {}))

    def evaluate_now(self) -> dict[str, EvalResult]:
        """What an evaluation measures: the smallest and the largest subnet."""
        return {"smallest": self.evaluate(self.parts.smallest), "largest": self.evaluate(self.parts.largest)}

    def _heldout_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``index``-th batch of the held-out training images, cycling through them in
        order (the same on every rank; a resumed run asks for the same ones)."""
        data = self.data.holdout
        size = min(self.config.batch_size, len(data))
        start = index * size % len(data)
        images, labels = zip(*(data[(start + j) % len(data)] for j in range(size)))
        return torch.stack(images).to(self.device), torch.as_tensor(labels).to(self.device)

    def _train_loader(self, epoch: int):
        views = OBJECTIVES.get(self.config.objective).views(self.config)
        train = Views(self.data.train, views) if views > 1 else self.data.train
        return make_loader(train, self.config.batch_size, shuffle=True, seed=self.config.seed,
                           epoch=epoch, workers=self.config.workers, drop_last=True,
                           rank=self.dist.rank, world_size=self.dist.world_size)

    # -- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        parts = self.parts
        return {
            "space": space_to_dict(self.space),
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "scaler": parts.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "rng": capture_rng_state(),
            **self.plugin_state(),
            "num_classes": self.num_classes,
            "data": {"name": self.config.data, "num_classes": self.data.num_classes,
                     "class_names": list(self.data.class_names),
                     "mean": list(self.data.mean), "std": list(self.data.std)},
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        parts = self.parts
        try:
            self.model.load_state_dict(state["model"])
            parts.optimizer.load_state_dict(state["optimizer"])
            parts.scheduler.load_state_dict(state["scheduler"])
            parts.scaler.load_state_dict(state["scaler"])
            self.load_plugin_state(state)
            self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            self.global_step = int(state["global_step"])
            rng = state["rng"]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {self.run_dir.checkpoint_path} does not match this run: "
                                  f"{one_line(exc)}") from None
        self._rng_after_skip = rng
        self.metrics = [row for row in self.run_dir.read_metrics() if int(row["epoch"]) <= self.epoch]

    def save(self) -> None:
        if self.dist.is_main:
            self.run_dir.save_checkpoint(self.state_dict(), self.checkpoint_format)
        barrier(self.dist)

    # -- training -----------------------------------------------------------------------

    @property
    def current_lr(self) -> float:
        return float(self.parts.optimizer.param_groups[0]["lr"])

    def fit(self) -> TrainSummary | None:
        """Train to the end of the schedule; the summary on the main process, None elsewhere."""
        config = self.config
        start = time.perf_counter()
        if self.dist.is_main:
            self.run_dir.write_config(config.to_dict())
            self.run_dir.log(f"{'resumed at epoch ' + str(self.epoch) if self.global_step else 'started'}: "
                             f"{self.describe()}, data {config.data}, "
                             f"{self.dist.world_size} process(es) on {self.device.type}, "
                             f"{self._trainable_text()}{self.init_note}, "
                             f"{self.steps_per_epoch} steps per epoch"
                             f"{''.join(', ' + note for note in self.process_notes)}")
        total_images = 0
        with process_group(self.dist):
            with progress_bars(self.progress_enabled and self.dist.is_main) as bars:
                while self.epoch < config.epochs:
                    stats = self._train_epoch(bars)
                    total_images += stats.images
                    self.epoch += 1
                    self.step_in_epoch = 0
                    row = self._end_of_epoch(stats)
                    if self.on_epoch_end is not None:
                        self.on_epoch_end(self.epoch, row)
            seconds = time.perf_counter() - start
            final = self._final_evaluation()  # every rank takes part
            summary = self._summary(seconds, total_images, final) if self.dist.is_main else None
        return summary

    def _train_epoch(self, bars: Bars) -> EpochStats:
        config = self.config
        stats = EpochStats()
        loader = iter(self._train_loader(self.epoch))
        for _ in range(self.step_in_epoch):  # resuming inside an epoch
            next(loader)
        if self._rng_after_skip is not None:
            restore_rng_state(self._rng_after_skip)
            self._rng_after_skip = None
        bar = bars.add(f"epoch {self.epoch + 1}/{config.epochs}", self.steps_per_epoch, self.step_in_epoch)
        tick = time.perf_counter()
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if config.channels_last and images.dim() == 4:  # two views (cross-path) stay as they come
                images = images.contiguous(memory_format=torch.channels_last)
            losses = self.train_step(images, labels)
            stats.add(losses, images.shape[0] * self.dist.world_size)
            self.step_in_epoch += 1
            self.global_step += 1
            rate = stats.images / max(time.perf_counter() - tick, 1e-9)
            bar.advance(note=f"loss {losses.largest:.3f}  lr {self.current_lr:.4f}  {rate:,.0f} img/s")
            if config.save_every and self.global_step % config.save_every == 0 and self.step_in_epoch < self.steps_per_epoch:
                self.save()
        stats.seconds = time.perf_counter() - tick
        return stats

    # -- evaluation and bookkeeping -----------------------------------------------------

    def evaluated_model(self) -> torch.nn.Module:
        """The supernet evaluations read: the student, or the mean teacher (``--eval-weights teacher``)."""
        if self.config.eval_weights == "teacher":
            return self.objective.teacher_model(self.parts)
        return self.model

    def evaluate(self, arch: Arch) -> EvalResult:
        """Every rank recalibrates BN on the same training batches, evaluates its shard of
        the validation split, and the tallies are summed over ranks. A label-free run's
        subnets are measured by a linear probe instead, each rank fitting the same one."""
        config, dist = self.config, self.dist
        calib = calibration_loader(self.data.calib, config.batch_size, config.seed, config.workers)
        if self.data.probe is not None:
            return probe_subnet(self.evaluated_model(), arch, calib, config.calib_batches,
                                evaluation_loader(self.data.probe, config.batch_size, config.workers),
                                evaluation_loader(self.data.val, config.batch_size, config.workers), self.device)
        val = evaluation_loader(self.data.val, config.batch_size, config.workers, dist.rank, dist.world_size)
        return evaluate_subnet(self.evaluated_model(), arch, calib, config.calib_batches, val, self.device,
                               lambda tally: all_reduce_sum(tally, dist))

    def _end_of_epoch(self, stats: EpochStats) -> dict[str, Any]:
        config = self.config
        row: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.global_step,
            "lr": self.current_lr,
            "loss_largest": stats.loss_largest / max(stats.steps, 1),
            "loss_distill": stats.loss_distill / max(stats.steps, 1),
            "images_per_second": stats.images / max(stats.seconds, 1e-9),
            "seconds": stats.seconds,
        }
        evaluate_now = config.eval_every and (self.epoch % config.eval_every == 0 or self.epoch == config.epochs)
        if evaluate_now:  # on every rank, each on its shard of the validation split
            self.last_eval = (self.epoch, self.evaluate_now())
        if self.dist.is_main:
            if evaluate_now:
                row.update({f"acc1_{name}": result.acc1 for name, result in self.last_eval[1].items()})
            epoch_end = getattr(getattr(self.parts, "sampler", None), "epoch_end", None)
            if epoch_end is not None:  # e.g. fpnas: its distribution and its numbers
                row.update(epoch_end(self.run_dir))
            self.metrics.append(row)
            self.run_dir.write_metrics(self.metrics)
            self.run_dir.log(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in row.items()))
        self.save()
        return row

    def _final_evaluation(self) -> dict[str, EvalResult]:
        """The smallest and largest subnet's accuracy at the end: the last epoch's when it
        was evaluated, else measured now."""
        if self.last_eval and self.last_eval[0] == self.epoch:
            return self.last_eval[1]
        return self.evaluate_now()

    def _summary(self, seconds: float, total_images: int, final: dict[str, EvalResult]) -> TrainSummary:
        summary = TrainSummary(run_dir=str(self.run_dir.path), epochs=self.epoch, seconds=seconds,
                               images_per_second=total_images / max(seconds, 1e-9))
        for name, arch in (("smallest", self.parts.smallest), ("largest", self.parts.largest)):
            mflops, params_m = arch_costs(self.space, arch, self.num_classes)
            getattr(summary, name).update(arch=arch.to_dict(), mflops=mflops, params_m=params_m,
                                          **final[name].to_dict())
        self.run_dir.log(f"finished: smallest acc1 {summary.smallest['acc1']:.2f}, "
                         f"largest acc1 {summary.largest['acc1']:.2f}")
        return summary


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------


def start_training(overrides: dict[str, Any], config_file: str | None = None, progress: bool = True,
                   on_epoch_end: Callable[[int, dict], None] | None = None,
                   process_notes: tuple[str, ...] = ()) -> TrainSummary | None:
    """A new run: defaults, then ``config_file``, then the given options."""
    base = read_config_file(config_file) if config_file else {}
    config = build_config(overrides, base)
    space = load_space(config.space)
    run_dir = RunDir(config.run_dir or config.default_run_dir())
    if run_dir.has_checkpoint():
        raise AnasError(f"run folder {run_dir.path} already holds a checkpoint: continue it with "
                        f"--resume {run_dir.path} or choose another --run-dir")
    config.run_dir = str(run_dir.path)
    return Trainer(config, run_dir, space, progress=progress, on_epoch_end=on_epoch_end,
                   process_notes=process_notes).fit()


FIXED_ON_RESUME = ("private_bn", "train_only", "objective", "teacher", "regularizer", "queue_size")
"""Options a run keeps: the supernet's shape, the optimizer's parameters and the saved
states of the objective and the regularizers (a mean teacher's weights, a queue) depend on them."""


def resume_training(path: str, overrides: dict[str, Any], progress: bool = True,
                    on_epoch_end: Callable[[int, dict], None] | None = None,
                    process_notes: tuple[str, ...] = ()) -> TrainSummary | None:
    """Continue the run in ``path`` from its last checkpoint; given options override the
    run's configuration (for example a larger ``epochs``)."""
    run_dir = RunDir(path)
    state = run_dir.load_checkpoint()
    space = checkpoint_space(state, run_dir.checkpoint_path)
    saved = config_from_mapping(state["config"], str(run_dir.checkpoint_path))
    requested_space = overrides.get("space")
    if requested_space is not None and load_space(requested_space) != space:
        raise CheckpointError(f"checkpoint {run_dir.checkpoint_path} is of space {space.name}, "
                              f"not {requested_space}")
    if run_dir.config_path.is_file():
        on_disk = read_config_file(run_dir.config_path)
        if on_disk.get("space") not in (None, saved.get("space")):
            raise CheckpointError(f"checkpoint {run_dir.checkpoint_path} is of space {space.name}, but "
                                  f"{run_dir.config_path} names space {on_disk.get('space')}")
    config = build_config({**overrides, "space": saved.get("space"), "run_dir": str(run_dir.path)}, saved)
    trained_as = build_config({}, saved)
    for name in FIXED_ON_RESUME:
        if getattr(config, name) != getattr(trained_as, name):
            flag = "--" + name.replace("_", "-")
            raise AnasError(f"{flag} cannot change when resuming {run_dir.path} (it was "
                            f"{getattr(trained_as, name)}): start a new run")
    return Trainer(config, run_dir, space, resume_state=state, progress=progress, on_epoch_end=on_epoch_end,
                   process_notes=process_notes).fit()
