"""Supernet training: the BigNAS sandwich rule with in-place distillation and attentive
sampling (AttentiveNAS), from one CPU to many GPUs.

Each step: the largest subnet learns from the labels (label smoothing, dropout,
drop-connect); ``num_subnets - 2`` sampled subnets and then the smallest learn from the
largest's detached logits (soft cross-entropy, temperature 1). Gradients accumulate over
the subnets, are averaged over ranks, clipped by value, and one SGD step is taken; the
learning rate warms up linearly and then follows a cosine to zero, stepped per batch.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from anas.space.arch import Arch, largest_arch, smallest_arch
from anas.space.cost import arch_costs
from anas.train.data import DATASETS, DataConfig, DataSplits, load_data, make_loader
from anas.train.distributed import (DistContext, all_reduce_gradients, all_reduce_mean, all_reduce_sum, barrier,
                              broadcast_parameters, init_distributed, shutdown)
from anas.errors import AnasError, CheckpointError
from anas.nn.evaluate import EvalResult, calibration_loader, evaluate_subnet, evaluation_loader
from anas.train.rundir import RunDir, checkpoint_space
from anas.predict.predictor import Predictor, PredictorEstimator
from anas.train.sampler import FlopsPrior, LossEstimator, SamplerSpec, SubnetSampler, parse_sampler
from anas.space.space import SearchSpace, load_space, space_to_dict
from anas.nn.supernet import Supernet

AMP_MODES = ("none", "bf16", "fp16")
ESTIMATORS = ("loss", "predictor")


@dataclass
class TrainConfig:
    """Every option of ``anas train``; the defaults are the README's main job (the ``tiny``
    space on the embedded digits, a short schedule) with the AttentiveNAS recipe."""

    # what to train
    space: str = "tiny"
    num_classes: int | None = None  # default: the dataset's
    # data
    data: str = "digits"
    data_dir: str | None = None
    download: bool = False
    holdout: float = 0.0
    workers: int = 0
    # recipe (REFERENCE section 4)
    epochs: int = 12
    batch_size: int = 64  # per process
    lr: float = 0.1  # per 256 images; scaled by the global batch size
    warmup_epochs: float = 1.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-5  # conv and linear weights only
    label_smoothing: float = 0.1
    dropout: float | None = None  # largest subnet only; default: the space's
    drop_connect: float = 0.2  # largest subnet only, last `drop_connect_stages` stages
    drop_connect_stages: int = 2
    grad_clip: float = 1.0  # clip by value; 0 disables
    num_subnets: int = 4  # largest + (n - 2) sampled + smallest
    # sampling (REFERENCE section 5)
    sampler: str = "bestup-k3"
    estimator: str = "loss"
    predictor: str | None = None
    flops_step: float | None = None  # MFLOPs bin of the prior; default: range / 70
    prior_samples: int = 100_000
    # evaluation
    calib_batches: int = 8
    eval_every: int = 1
    # runtime
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    keep_freed_memory: bool = True  # glibc malloc keeps freed memory (anas.cli.allocator)
    seed: int = 0
    run_dir: str | None = None
    save_every: int = 0  # also checkpoint every N steps (0: every epoch only)

    def validate(self) -> None:
        parse_sampler(self.sampler)  # raises on a malformed sampler
        if self.estimator not in ESTIMATORS:
            raise AnasError(f"unknown estimator {self.estimator!r}: use {', '.join(ESTIMATORS)}")
        if self.estimator == "predictor" and not self.predictor:
            raise AnasError("--estimator predictor needs --predictor DIR (a folder written by anas predict-fit)")
        if self.data not in DATASETS:
            raise AnasError(f"unknown dataset {self.data!r}: use one of {', '.join(DATASETS)}")
        if self.amp not in AMP_MODES:
            raise AnasError(f"unknown --amp {self.amp!r}: use {', '.join(AMP_MODES)}")
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.num_subnets >= 2, "--num-subnets must be at least 2 (the largest and the smallest)"),
            (self.lr > 0, "--lr must be positive"),
            (self.warmup_epochs >= 0, "--warmup-epochs must be >= 0"),
            (self.calib_batches >= 1, "--calib-batches must be at least 1"),
            (0 <= self.drop_connect < 1, "--drop-connect must be in [0, 1)"),
            (self.dropout is None or 0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.grad_clip >= 0, "--grad-clip must be >= 0"),
            (self.save_every >= 0 and self.eval_every >= 0, "--save-every and --eval-every must be >= 0"),
            (self.workers >= 0, "--workers must be >= 0"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
             f"unknown --device {self.device!r}: use auto, cpu or cuda"),
        ]
        for ok, message in checks:
            if not ok:
                raise AnasError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_from_mapping(data: Any, source: str) -> dict[str, Any]:
    """Options from a YAML mapping (``--config`` or a run's ``config.yaml``); keys are the
    option names with ``_`` or ``-``. Unknown keys are refused by name."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AnasError(f"config {source} must be a YAML mapping of option names to values")
    known = {f.name: f for f in fields(TrainConfig)}
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise AnasError(f"config {source}: unknown option {key!r}")
        out[name] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise AnasError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise AnasError(f"config file {path} is not valid YAML{where}") from None
    return config_from_mapping(data, str(path))


def build_config(overrides: dict[str, Any], base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then ``base`` (a config file or a run's config), then ``overrides``."""
    values = {**(base or {}), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        config = TrainConfig(**values)
    except TypeError as exc:
        raise AnasError(f"bad training option: {exc}") from None
    _check_types(config)
    config.validate()
    return config


def _check_types(config: TrainConfig) -> None:
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        value, default = getattr(config, f.name), getattr(defaults, f.name)
        if value is None or default is None:
            continue
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise AnasError(f"option {f.name} must be of type {expected.__name__}, got {value!r}")


# ----------------------------------------------------------------------------------------
# Pieces of the recipe
# ----------------------------------------------------------------------------------------


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv and linear weights; none on BN parameters and biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up, then cosine to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """In-place distillation loss (temperature 1)."""
    return -(F.softmax(teacher_logits.float(), dim=1) * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AnasError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def default_run_dir(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    space = Path(config.space).stem if config.space.endswith((".yaml", ".yml")) else config.space
    return Path("runs") / f"{space}-{config.data}-{config.sampler}-{stamp}"


@dataclass
class EpochStats:
    loss_largest: float = 0.0
    loss_distill: float = 0.0
    steps: int = 0
    images: int = 0
    seconds: float = 0.0

    def add(self, loss_largest: float, loss_distill: float, images: int) -> None:
        self.loss_largest += loss_largest
        self.loss_distill += loss_distill
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


# ----------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------


class Trainer:
    """Owns the model, optimizer, data and sampler of one run; ``fit()`` trains it."""

    def __init__(self, config: TrainConfig, run_dir: RunDir, space: SearchSpace, resume_state: dict | None = None,
                 progress: bool = True, on_epoch_end: Callable[[int, dict], None] | None = None):
        self.config = config
        self.run_dir = run_dir
        self.space = space
        self.progress_enabled = progress
        self.on_epoch_end = on_epoch_end
        self.process_notes: list[str] = []  # process-wide settings the caller made (for train.log)
        self.device = resolve_device(config.device)
        if config.amp == "fp16" and self.device.type != "cuda":
            raise AnasError("--amp fp16 needs CUDA; use --amp bf16 or none on the CPU")
        self.dist: DistContext = init_distributed(self.device.type)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.data: DataSplits = load_data(DataConfig(
            name=config.data, data_dir=config.data_dir, download=config.download,
            resolution=max(space.resolutions), holdout=config.holdout, seed=config.seed,
        ))
        self.num_classes = config.num_classes or self.data.num_classes
        if self.num_classes < self.data.num_classes:
            raise AnasError(f"--num-classes {self.num_classes} is below the {self.data.num_classes} classes of the data")
        torch.manual_seed(config.seed)
        self.model = Supernet(space, self.num_classes).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        broadcast_parameters(self.model, self.dist)
        self.params = list(self.model.parameters())
        self.world_batch = config.batch_size * self.dist.world_size
        self.optimizer = torch.optim.SGD(parameter_groups(self.model, config.weight_decay),
                                         lr=config.lr * self.world_batch / 256, momentum=config.momentum,
                                         nesterov=config.nesterov)
        self.steps_per_epoch = len(self._train_loader(0))
        if self.steps_per_epoch == 0:
            raise AnasError(f"the training split has fewer images than one batch ({config.batch_size})")
        total = self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(total, round(config.warmup_epochs * self.steps_per_epoch)))
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16")
        self.autocast = self._autocast_factory()
        self.sampler = self._build_sampler(parse_sampler(config.sampler))
        self.smallest, self.largest = smallest_arch(space), largest_arch(space)
        self.dropout = space.dropout if config.dropout is None else config.dropout
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.metrics: list[dict[str, Any]] = []
        self.last_eval: tuple[int, dict[str, EvalResult]] | None = None
        self._rng_after_skip: dict | None = None
        if resume_state is not None:
            self._load_state(resume_state)

    # -- setup helpers ------------------------------------------------------------------

    def _autocast_factory(self):
        if self.config.amp == "none":
            return None
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    def _build_sampler(self, spec: SamplerSpec) -> SubnetSampler:
        if not spec.attentive:
            return SubnetSampler(self.space, spec, self.config.seed)
        prior = FlopsPrior(self.space, self.config.flops_step, self.config.prior_samples, self.config.seed,
                           self.num_classes)
        if self.config.estimator == "predictor":
            predictor = Predictor.load(self.config.predictor)
            predictor.check_space(self.space, "this run")
            estimator = PredictorEstimator(predictor)  # deterministic: every rank agrees
        else:
            estimator = LossEstimator(self.model, lambda t: all_reduce_mean(t, self.dist), self.autocast)
        return SubnetSampler(self.space, spec, self.config.seed, prior, estimator)

    def _train_loader(self, epoch: int):
        return make_loader(self.data.train, self.config.batch_size, shuffle=True, seed=self.config.seed,
                           epoch=epoch, workers=self.config.workers, drop_last=True,
                           rank=self.dist.rank, world_size=self.dist.world_size)

    # -- state --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "space": space_to_dict(self.space),
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": _numpy_state(),
                "python": random.getstate(),
            },
            "sampler": self.sampler.state_dict(),
            "num_classes": self.num_classes,
            "data": {"name": self.config.data, "num_classes": self.data.num_classes,
                     "class_names": list(self.data.class_names),
                     "mean": list(self.data.mean), "std": list(self.data.std)},
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        path = self.run_dir.checkpoint_path
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.sampler.load_state_dict(state["sampler"])
            self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
            self.global_step = int(state["global_step"])
            rng = state["rng"]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise CheckpointError(f"checkpoint {path} does not match this run: {reason}") from None
        self._rng_after_skip = rng
        self.metrics = [row for row in self.run_dir.read_metrics() if int(row["epoch"]) <= self.epoch]

    def _restore_rng(self, rng: dict[str, Any]) -> None:
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        _set_numpy_state(rng["numpy"])
        random.setstate(_as_python_state(rng["python"]))

    def save(self) -> None:
        if self.dist.is_main:
            self.run_dir.save_checkpoint(self.state_dict())
        barrier(self.dist)

    # -- training -----------------------------------------------------------------------

    def fit(self) -> TrainSummary | None:
        """Train to the end of the schedule; the summary on the main process, None elsewhere."""
        config = self.config
        start = time.perf_counter()
        if self.dist.is_main:
            self.run_dir.write_config(config.to_dict())
            self.run_dir.log(f"{'resumed at epoch ' + str(self.epoch) if self.global_step else 'started'}: "
                             f"space {self.space.name}, data {config.data}, sampler {config.sampler}, "
                             f"{self.dist.world_size} process(es) on {self.device.type}, "
                             f"{self.steps_per_epoch} steps per epoch"
                             f"{''.join(', ' + note for note in self.process_notes)}")
        total_images = 0
        try:
            with self._progress() as progress:
                while self.epoch < config.epochs:
                    stats = self._train_epoch(progress)
                    total_images += stats.images
                    self.epoch += 1
                    self.step_in_epoch = 0
                    row = self._end_of_epoch(stats)
                    if self.on_epoch_end is not None:
                        self.on_epoch_end(self.epoch, row)
            seconds = time.perf_counter() - start
            final = self._final_evaluation()  # every rank takes part
            summary = self._summary(seconds, total_images, final) if self.dist.is_main else None
        finally:
            shutdown(self.dist)
        return summary

    def _train_epoch(self, progress) -> EpochStats:
        config = self.config
        stats = EpochStats()
        loader = iter(self._train_loader(self.epoch))
        for _ in range(self.step_in_epoch):  # resuming inside an epoch
            next(loader)
        if self._rng_after_skip is not None:
            self._restore_rng(self._rng_after_skip)
            self._rng_after_skip = None
        task = progress.add_task(f"epoch {self.epoch + 1}/{config.epochs}", total=self.steps_per_epoch,
                                 completed=self.step_in_epoch, info="") if progress else None
        tick = time.perf_counter()
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            loss_largest, loss_distill = self.train_step(images, labels)
            stats.add(loss_largest, loss_distill, images.shape[0] * self.dist.world_size)
            self.step_in_epoch += 1
            self.global_step += 1
            if task is not None:
                rate = stats.images / max(time.perf_counter() - tick, 1e-9)
                progress.update(task, advance=1, info=f"loss {loss_largest:.3f}  lr {self.current_lr:.4f}  {rate:,.0f} img/s")
            if config.save_every and self.global_step % config.save_every == 0 and self.step_in_epoch < self.steps_per_epoch:
                self.save()
        stats.seconds = time.perf_counter() - tick
        return stats

    @property
    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def sample_subnets(self, images: torch.Tensor, labels: torch.Tensor) -> list[Arch]:
        """The subnets between the largest and the smallest of this step."""
        return [self.sampler.sample(images, labels) for _ in range(self.config.num_subnets - 2)]

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """One sandwich step; returns the largest subnet's loss and the mean distillation loss."""
        config = self.config
        model = self.model
        model.train()
        middle = self.sample_subnets(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        autocast = self.autocast or nullcontext
        model.set_active(self.largest, dropout=self.dropout, drop_connect=config.drop_connect,
                         drop_connect_stages=config.drop_connect_stages)
        with autocast():
            logits = model(images)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        self.scaler.scale(loss).backward()
        teacher = logits.detach()
        distill_total = 0.0
        for arch in [*middle, self.smallest]:
            model.set_active(arch)
            with autocast():
                distill = soft_cross_entropy(model(images), teacher)
            self.scaler.scale(distill).backward()
            distill_total += float(distill.detach())
        all_reduce_gradients(self.params, self.dist)
        self.scaler.unscale_(self.optimizer)
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_value_(self.params, config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss.detach()), distill_total / (len(middle) + 1)

    # -- evaluation and bookkeeping -----------------------------------------------------

    def evaluate(self, arch: Arch) -> EvalResult:
        """Every rank recalibrates BN on the same training batches, evaluates its shard of
        the validation split, and the tallies are summed over ranks."""
        config, dist = self.config, self.dist
        calib = calibration_loader(self.data.calib, config.batch_size, config.seed, config.workers)
        val = evaluation_loader(self.data.val, config.batch_size, config.workers, dist.rank, dist.world_size)
        return evaluate_subnet(self.model, arch, calib, config.calib_batches, val, self.device,
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
            self.last_eval = (self.epoch, {"smallest": self.evaluate(self.smallest),
                                           "largest": self.evaluate(self.largest)})
        if self.dist.is_main:
            if evaluate_now:
                row["acc1_smallest"] = self.last_eval[1]["smallest"].acc1
                row["acc1_largest"] = self.last_eval[1]["largest"].acc1
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
        return {"smallest": self.evaluate(self.smallest), "largest": self.evaluate(self.largest)}

    def _summary(self, seconds: float, total_images: int, final: dict[str, EvalResult]) -> TrainSummary:
        summary = TrainSummary(run_dir=str(self.run_dir.path), epochs=self.epoch, seconds=seconds,
                               images_per_second=total_images / max(seconds, 1e-9))
        for name, arch in (("smallest", self.smallest), ("largest", self.largest)):
            result = final[name]
            mflops, params_m = arch_costs(self.space, arch, self.num_classes)
            getattr(summary, name).update(arch=arch.to_dict(), mflops=mflops, params_m=params_m, **result.to_dict())
        self.run_dir.log(f"finished: smallest acc1 {summary.smallest['acc1']:.2f}, "
                         f"largest acc1 {summary.largest['acc1']:.2f}")
        return summary

    def _progress(self):
        if not (self.progress_enabled and self.dist.is_main):
            return nullcontext(None)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from anas.cli.common import err

        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=err, transient=False)


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["cached"]))


def _as_python_state(state):
    version, internal, gauss = state
    return version, tuple(internal), gauss


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------


def start_training(overrides: dict[str, Any], config_file: str | None = None, progress: bool = True,
                   on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainSummary | None:
    """A new run: defaults, then ``config_file``, then the given options."""
    base = read_config_file(config_file) if config_file else {}
    config = build_config(overrides, base)
    space = load_space(config.space)
    run_dir = RunDir(config.run_dir or default_run_dir(config))
    if run_dir.has_checkpoint():
        raise AnasError(f"run folder {run_dir.path} already holds a checkpoint: continue it with "
                        f"--resume {run_dir.path} or choose another --run-dir")
    config.run_dir = str(run_dir.path)
    return Trainer(config, run_dir, space, progress=progress, on_epoch_end=on_epoch_end).fit()


def resume_training(path: str, overrides: dict[str, Any], progress: bool = True,
                    on_epoch_end: Callable[[int, dict], None] | None = None) -> TrainSummary | None:
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
    return Trainer(config, run_dir, space, resume_state=state, progress=progress, on_epoch_end=on_epoch_end).fit()
