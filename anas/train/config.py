"""The configuration of a training run: every option of ``anas train``, declared once.

Each field of :class:`TrainConfig` is one option: its name (``--batch-size`` for
``batch_size``), type, default and help text live here, and the command line is built
from them. A run's options come from the defaults, then a YAML file (``--config``, or the
run's own ``config.yaml`` when resuming), then the flags given.
"""

from __future__ import annotations

import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from anas.checks import SUBNET_BYTES, check_memory, check_seed
from anas.device import check_device_name
from anas.errors import AnasError
from anas.io import read_yaml
from anas.train.data import DATASETS, DataConfig
from anas.train.estimators import ESTIMATORS, check_estimator_config
from anas.train.objectives import OBJECTIVES
from anas.train.recipe import TRAIN_ONLY
from anas.train.regularizers import REGULARIZERS, check_regularizers
from anas.train.samplers import SAMPLERS
from anas.train.samplers.fpnas import check_fpnas_options

AMP_MODES = ("none", "bf16", "fp16")
TEACHERS = ("none", "ema")
EVAL_WEIGHTS = ("student", "teacher")

RETIRED_OPTIONS = {"keep_freed_memory"}
"""Options that configurations written by earlier versions hold and that are no longer
training options (``keep_freed_memory`` is a process setting of ``anas train``); reading
such a file skips them."""


def option(default: Any = MISSING, help: str = "", *, short: str | None = None, default_text: str | None = None,
           default_factory: Any = MISSING, choices: Any = None) -> Any:
    """A configuration field with what the command line shows for it: its help text, an
    optional short flag, how its default reads when it is None (``default_text``), and
    the registry whose names it takes (``choices``, listed in the help)."""
    metadata = {"help": help, "short": short, "default_text": default_text, "choices": choices}
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class TrainConfig:
    """Every option of ``anas train``. The defaults are the README's main job (the ``tiny``
    space on the embedded digits, a short schedule) with the AttentiveNAS recipe."""

    # what to train, on what
    space: str = option("tiny", "Built-in space or YAML file.", short="-s")
    data: str = option("digits", f"Dataset: {' | '.join(DATASETS)}.")
    data_dir: str | None = option(None, "Folder of cifar files or of train/ and val/ (imagefolder).")
    download: bool = option(False, "Let torchvision download CIFAR into --data-dir.")
    holdout: float = option(0.0, "Fraction of the training split reserved for predictor data.")
    num_classes: int | None = option(None, "Classifier size.", default_text="the dataset's")
    workers: int = option(0, "Data-loading worker processes.")
    # recipe (REFERENCE section 4)
    epochs: int = option(12, "Epochs of the schedule.")
    batch_size: int = option(64, "Images per step and process.", short="-b")
    lr: float = option(0.1, "Learning rate per 256 images (scaled by the global batch).")
    warmup_epochs: float = option(1.0, "Linear warm-up, then cosine to 0 per batch.")
    momentum: float = option(0.9, "SGD momentum.")
    nesterov: bool = option(True, "Nesterov momentum.")
    weight_decay: float = option(1e-5, "On conv and linear weights; none on BN and biases.")
    label_smoothing: float = option(0.1, "For the largest subnet's label loss.")
    dropout: float | None = option(None, "Before the classifier, largest subnet only.", default_text="the space's")
    drop_connect: float = option(0.2, "Largest drop-connect rate, largest subnet only.")
    drop_connect_stages: int = option(2, "Drop-connect in this many last stages.")
    grad_clip: float = option(1.0, "Clip gradients by value (0: off).")
    num_subnets: int = option(4, "Subnets per step: largest, sampled ones, smallest.")
    init: str | None = option(None, "Start from the weights of this run folder (e.g. one of anas import); "
                                    "the classifier is re-initialized when the class count differs.")
    private_bn: bool = option(False, "A projection-BN scale and shift per kernel and expand choice (BN-NAS).")
    train_only: str = option("all", f"Parameters that train: {' | '.join(TRAIN_ONLY)} (bn: the BN-NAS indicator's).")
    objective: str = option("supervised", "What the supernet learns from: the labels (sandwich rule), or the "
                                          "images alone (contrastive: Pi-NAS's label-free cross-path InfoNCE; "
                                          "subnets are then measured by a linear probe).", choices=OBJECTIVES)
    queue_size: int | None = option(None, "Contrastive: negatives kept in the queue.",
                                    default_text="2^k <= a quarter of the training images, 256..65536")
    temperature: float | None = option(None, "Contrastive: InfoNCE temperature.", default_text="0.2")
    regularizer: list[str] = option(help="Loss terms of the step (repeatable).", default_factory=lambda: ["kd"],
                                    choices=REGULARIZERS)
    teacher: str | None = option(None, f"Teacher of the sampled subnets: {' | '.join(TEACHERS)} (ema: Pi-NAS's "
                                       "mean teacher, an EMA of the supernet, whose outputs they learn besides "
                                       "the largest subnet's).",
                                 default_text="none (ema with --objective contrastive)")
    ema_momentum: float | None = option(None, "Momentum m of --teacher ema: teacher <- m teacher + (1 - m) student.",
                                        default_text="1 - 10 / total steps, at most 0.999")
    cross_path: bool = option(False, "Pi-NAS cross-path: sampled subnets in pairs that differ in every setting, "
                                     "each on its own augmented view, each learning the teacher's output for the "
                                     "other (needs --teacher ema).")
    cross_path_weight: float = option(1.0, "Weight of the cross-path terms.")
    eval_weights: str = option("student", f"Weights that evaluation, predict-fit, search --verify, standalone and "
                                          f"export use: {' | '.join(EVAL_WEIGHTS)} (teacher: the --teacher ema "
                                          f"one's).")
    # sampling (REFERENCE section 5)
    sampler: str | None = option(None, "Which subnets a step trains.", choices=SAMPLERS,
                                 default_text="bestup-k3 (uniform with --objective contrastive)")
    estimator: str = option("loss", "Scores attentive candidates.", choices=ESTIMATORS)
    predictor: str | None = option(None, "Predictor folder of anas predict-fit (with --estimator predictor).")
    flops_target: float | None = option(None, "FP-NAS: MFLOPs above which subnets pay the hinge cost.")
    fpnas_beta: float | None = option(None, "FP-NAS: weight of the hinge cost, per image.", default_text="1")
    fpnas_lambda: float | None = option(None, "FP-NAS: candidates per nat of the distribution's entropy.",
                                        default_text="1")
    fpnas_switch_epoch: int | None = option(None, "FP-NAS: epoch of the switch from the factorized to the joint "
                                            "distribution.", default_text="half the epochs")
    flops_step: float | None = option(None, "MFLOPs bin width of the FLOPs prior.", default_text="range / 70")
    prior_samples: int = option(100_000, "Subnets sampled to build the FLOPs prior.")
    # evaluation
    calib_batches: int = option(8, "Training batches for BN recalibration before evaluation.")
    eval_every: int = option(1, "Evaluate smallest and largest every N epochs (0: only at the end).")
    # runtime
    device: str = option("auto", "auto | cpu | cuda[:N].")
    amp: str = option("none", f"Mixed precision: {' | '.join(AMP_MODES)} (fp16 on CUDA).")
    channels_last: bool = option(False, "Channels-last memory format.")
    seed: int = option(0, "Seed of weights, data order and subnet sampling.")
    run_dir: str | None = option(None, "Run folder.", default_text="runs/<space>-<data>-<sampler>-<time>")
    save_every: int = option(0, "Also checkpoint every N steps (0: each epoch only).")

    def __post_init__(self) -> None:
        """Options left unset take the objective's defaults (a label-free objective samples
        uniformly and has a mean teacher)."""
        if self.objective in OBJECTIVES:
            for name, value in OBJECTIVES.get(self.objective).defaults.items():
                if getattr(self, name) is None:
                    setattr(self, name, value)

    def validate(self) -> None:
        """Refuse bad values with a one-line error naming the option."""
        OBJECTIVES.get(self.objective).check_config(self)
        SAMPLERS.resolve(self.sampler)
        ESTIMATORS.resolve(self.estimator)
        check_estimator_config(self.estimator, self)
        check_fpnas_options(self)
        check_regularizers(self.regularizer)
        if self.data not in DATASETS:
            raise AnasError(f"unknown dataset {self.data!r}: use one of {', '.join(DATASETS)}")
        if self.train_only not in TRAIN_ONLY:
            raise AnasError(f"unknown --train-only {self.train_only!r}: use {', '.join(TRAIN_ONLY)}")
        if self.teacher not in TEACHERS:
            raise AnasError(f"unknown --teacher {self.teacher!r}: use {', '.join(TEACHERS)}")
        check_teacher_options(self)
        if self.amp not in AMP_MODES:
            raise AnasError(f"unknown --amp {self.amp!r}: use {', '.join(AMP_MODES)}")
        checks = [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.num_subnets >= 2, "--num-subnets must be at least 2 (the largest and the smallest)"),
            (0 < self.lr < math.inf, "--lr must be a positive finite number"),
            (0 <= self.warmup_epochs < math.inf, "--warmup-epochs must be a finite number >= 0"),
            (0 <= self.momentum < 1, "--momentum must be in [0, 1)"),
            (0 <= self.weight_decay < math.inf, "--weight-decay must be a finite number >= 0"),
            (0 <= self.holdout < 1, "--holdout must be in [0, 1)"),
            (self.prior_samples >= 1, "--prior-samples must be at least 1"),
            (self.flops_step is None or 0 < self.flops_step < math.inf, "--flops-step must be a positive finite number"),
            (self.calib_batches >= 1, "--calib-batches must be at least 1"),
            (0 <= self.drop_connect < 1, "--drop-connect must be in [0, 1)"),
            (self.dropout is None or 0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (0 <= self.grad_clip < math.inf, "--grad-clip must be a finite number >= 0"),
            (self.save_every >= 0 and self.eval_every >= 0, "--save-every and --eval-every must be >= 0"),
            (self.workers >= 0, "--workers must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise AnasError(message)
        check_memory(self.prior_samples * SUBNET_BYTES, "--prior-samples", self.prior_samples)
        check_device_name(self.device, allow_auto=True)
        check_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def data_config(self, resolution: int, download: bool | None = None) -> DataConfig:
        """The data a run trains on, with images of ``resolution`` pixels."""
        return DataConfig(name=self.data, data_dir=self.data_dir,
                          download=self.download if download is None else download, resolution=resolution,
                          holdout=self.holdout, seed=self.seed, label_free=OBJECTIVES.get(self.objective).label_free)

    def default_run_dir(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        space = Path(self.space).stem if self.space.endswith((".yaml", ".yml")) else self.space
        return Path("runs") / f"{space}-{self.data}-{self.sampler}-{stamp}"


def check_teacher_options(config: TrainConfig) -> None:
    """Pi-NAS's options go together: a momentum in [0, 1) and cross-path training with the
    EMA teacher, an even number of sampled subnets, and a non-negative weight."""
    if config.eval_weights not in EVAL_WEIGHTS:
        raise AnasError(f"unknown --eval-weights {config.eval_weights!r}: use {', '.join(EVAL_WEIGHTS)}")
    if config.eval_weights == "teacher" and config.teacher != "ema":
        raise AnasError("--eval-weights teacher needs --teacher ema")
    if config.ema_momentum is not None and not 0 <= config.ema_momentum < 1:
        raise AnasError(f"--ema-momentum must be in [0, 1), got {config.ema_momentum}")
    if config.ema_momentum is not None and config.teacher != "ema":
        raise AnasError("--ema-momentum goes with --teacher ema")
    if config.cross_path and config.teacher != "ema":
        raise AnasError("--cross-path needs --teacher ema (the sampled subnets learn the teacher's outputs)")
    sampled = config.num_subnets - 2
    if config.cross_path and (sampled < 2 or sampled % 2):
        raise AnasError(f"--cross-path trains the sampled subnets in pairs: --num-subnets {config.num_subnets} "
                        f"gives {sampled}; use an even number of sampled subnets (--num-subnets 4, 6, ...)")
    if not 0 <= config.cross_path_weight < math.inf:
        raise AnasError(f"--cross-path-weight must be a finite number >= 0, got {config.cross_path_weight}")


def config_from_mapping(data: Any, source: str) -> dict[str, Any]:
    """Options from a YAML mapping (``--config`` or a run's ``config.yaml``); keys are the
    option names with ``_`` or ``-``. Unknown keys are refused by name."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AnasError(f"config {source} must be a YAML mapping of option names to values")
    known = {f.name for f in fields(TrainConfig)}
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in RETIRED_OPTIONS:
            continue
        if name not in known:
            raise AnasError(f"config {source}: unknown option {key!r}")
        out[name] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    return config_from_mapping(read_yaml(path, "config file"), str(path))


def build_config(overrides: dict[str, Any], base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then ``base`` (a config file or a run's config), then ``overrides``
    (options left at None are not given)."""
    config = _typed_config({**(base or {}), **{k: v for k, v in overrides.items() if v is not None}})
    config.validate()
    return config


def saved_config(data: Any, source: str) -> TrainConfig:
    """The configuration a run was trained with (its checkpoint's): read as it is, since
    it was validated when the run started; plug-ins it names need not be registered in
    this process (a run trained with a third-party sampler still loads for evaluation)."""
    return _typed_config(config_from_mapping(data, source), f"{source}: ")


def _typed_config(values: dict[str, Any], where: str = "") -> TrainConfig:
    """A ``TrainConfig`` of ``values`` whose types are checked (``where`` prefixes errors)."""
    try:
        config = TrainConfig(**values)
    except TypeError as exc:
        raise AnasError(f"{where}bad training option: {exc}") from None
    _check_types(config)
    return config


def _check_types(config: TrainConfig) -> None:
    """Values from YAML files are whatever the file says: check them against the fields'
    defaults (an int is accepted for a float; a single name for a list of names)."""
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        value, default = getattr(config, f.name), getattr(defaults, f.name)
        if value is None or default is None:
            continue
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
        elif expected is list:
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
                raise AnasError(f"option {f.name} must be a name or a list of names, got {value!r}")
            setattr(config, f.name, names)
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise AnasError(f"option {f.name} must be of type {expected.__name__}, got {value!r}")
