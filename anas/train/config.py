"""The configuration of a training run: the loop's own options, and the plug-ins it uses.

:class:`TrainConfig` declares what the loop owns (the space and data, the schedule and
optimizer, evaluation, device, seed, run folder) and which plug-ins a run uses
(``--sampler``, ``--estimator``, ``--objective``, ``--regularizer``, ``--teacher``,
``--data``). Each plug-in declares its own options next to its code; a run's
configuration holds those of the selected plug-ins (``options_for``), and one rule
refuses an option of a plug-in that is not selected (:mod:`anas.options`). A run's
options come from the defaults, then a YAML file (``--config``, or the run's own
``config.yaml`` when resuming), then the flags given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anas.checks import check_seed
from anas.data import DATASETS, DataConfig
from anas.options import HostsPlugins, all_option_names, build, option, slots, values_from_mapping
from anas.runtime.device import DeviceOption, check_device_name
from anas.train.recipe import TRAIN_ONLY
from anas.train.registries import ESTIMATORS, OBJECTIVES, REGULARIZERS, SAMPLERS, TEACHERS

AMP_MODES = ("none", "bf16", "fp16")

RETIRED_OPTIONS = {"keep_freed_memory"}
"""Options that configurations written by earlier versions hold and that are no longer
training options (``keep_freed_memory`` was a process setting, now glibc's environment
variables: docs/train.md); reading such a file skips them."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig(DeviceOption, HostsPlugins):
    """The options of ``anas train`` that the loop owns, and the plug-ins it selects. The
    defaults are the README's main job (the ``tiny`` space on the embedded digits, a short
    schedule) with the AttentiveNAS recipe."""

    # what to train, on what
    space: str = option("tiny", "Built-in space or YAML file.", short="-s")
    data: str = option("digits", "Dataset.", choices=DATASETS)
    holdout: float = option(0.0, "Fraction of the training split reserved for predictor data.", min=0, below=1)
    num_classes: int | None = option(None, "Classifier size.", default_text="the dataset's", min=1)
    workers: int = option(0, "Data-loading worker processes.", min=0)
    # recipe (REFERENCE section 4)
    epochs: int = option(12, "Epochs of the schedule.", min=1)
    batch_size: int = option(64, "Images per step and process.", short="-b", min=1)
    lr: float = option(0.1, "Learning rate per 256 images (scaled by the global batch).", above=0, finite=True)
    warmup_epochs: float = option(1.0, "Linear warm-up, then cosine to 0 per batch.", min=0, finite=True)
    momentum: float = option(0.9, "SGD momentum.", min=0, below=1)
    nesterov: bool = option(True, "Nesterov momentum.")
    weight_decay: float = option(1e-5, "On conv and linear weights; none on BN and biases.", min=0, finite=True)
    label_smoothing: float = option(0.1, "For the largest subnet's label loss.", min=0, below=1)
    dropout: float | None = option(None, "Before the classifier, largest subnet only.", default_text="the space's",
                                   min=0, below=1)
    drop_connect: float = option(0.2, "Largest drop-connect rate, largest subnet only.", min=0, below=1)
    drop_connect_stages: int = option(2, "Drop-connect in this many last stages.", min=0)
    grad_clip: float = option(1.0, "Clip gradients by value (0: off).", min=0, finite=True)
    num_subnets: int = option(4, "Subnets per step: largest, sampled ones, smallest.", min=2)
    init: str | None = option(None, "Start from the weights of this run folder (e.g. one of anas import); "
                                    "the classifier is re-initialized when the class count differs.")
    private_bn: bool = option(False, "A projection-BN scale and shift per kernel and expand choice (BN-NAS).",
                              fixed_on_resume=True)
    train_only: str = option("all", "Parameters that train (bn: the BN-NAS indicator's).", choices=tuple(TRAIN_ONLY),
                             fixed_on_resume=True)
    # the plug-ins a step uses
    objective: str = option("supervised", "What the supernet learns from: the labels (sandwich rule), or the "
                                          "images alone (contrastive: Pi-NAS's label-free cross-path InfoNCE; "
                                          "subnets are then measured by a linear probe).", choices=OBJECTIVES,
                            fixed_on_resume=True)
    regularizer: list[str] = option(help="Loss terms of the step (repeatable).", default_factory=lambda: ["kd"],
                                    choices=REGULARIZERS, fixed_on_resume=True)
    teacher: str | None = option(None, "Teacher of the sampled subnets besides the largest subnet (ema: Pi-NAS's "
                                       "mean teacher, an EMA of the supernet).", choices=TEACHERS,
                                 default_text="none (ema with --objective contrastive)", fixed_on_resume=True)
    sampler: str | None = option(None, "Which subnets a step trains.", choices=SAMPLERS,
                                 default_text="bestup-k3 (uniform with --objective contrastive)")
    estimator: str = option("loss", "Scores attentive candidates.", choices=ESTIMATORS)
    # evaluation
    calib_batches: int = option(8, "Training batches for BN recalibration before evaluation.", min=1)
    eval_every: int = option(1, "Evaluate smallest and largest every N epochs (0: only at the end).", min=0)
    # runtime
    amp: str = option("none", "Mixed precision (fp16 on CUDA).", choices=AMP_MODES)
    channels_last: bool = option(False, "Channels-last memory format.")
    seed: int = option(0, "Seed of weights, data order and subnet sampling.", check=check_seed)
    run_dir: str | None = option(None, "Run folder.", default_text="runs/<space>-<data>-<sampler>-<time>")
    save_every: int = option(0, "Also checkpoint every N steps (0: each epoch only).", min=0)
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        """Plug-ins left unset take the objective's defaults (a label-free objective samples
        uniformly and has a mean teacher)."""
        defaults = OBJECTIVES.get(self.objective).defaults if self.objective in OBJECTIVES else {}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    def validate(self) -> None:
        """What the options' declarations cannot check alone: the device's name, and each
        selected plug-in's rules about the rest of the run (``check_config``)."""
        check_device_name(self.device)
        for slot in slots(TrainConfig):
            for entry in slot.entries(getattr(self, slot.name)):
                check = getattr(entry.plugin, "check_config", None)
                if check is not None:
                    check(self)

    def data_config(self, resolution: int) -> DataConfig:
        """The data a run trains on, with images of ``resolution`` pixels."""
        return DataConfig(self.data, self.options_for("data"), resolution, self.holdout, self.seed,
                          OBJECTIVES.get(self.objective).label_free)

    def default_run_dir(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        space = Path(self.space).stem if self.space.endswith((".yaml", ".yml")) else self.space
        return Path("runs") / f"{space}-{self.data}-{self.sampler}-{stamp}"


def config_from_mapping(data: Any, source: str, lenient: bool = False) -> dict[str, Any]:
    """Options from a YAML mapping (``--config`` or a run's ``config.yaml``); keys are the
    option names with ``_`` or ``-``. Unknown keys are refused by name (``lenient``: a
    run's own saved configuration, whose plug-ins need not be registered here, drops them)."""
    known = all_option_names(TrainConfig)
    if lenient and isinstance(data, dict):
        data = {k: v for k, v in data.items() if str(k).replace("-", "_") in known}
    return values_from_mapping(data, known, source, RETIRED_OPTIONS)


def build_config(overrides: dict[str, Any], base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then ``base`` (a config file or a run's config), then ``overrides``
    (options left at None are not given)."""
    config = build(TrainConfig, {**(base or {}), **{k: v for k, v in overrides.items() if v is not None}})
    config.validate()
    return config


def saved_config(data: Any, source: str) -> TrainConfig:
    """The configuration a run was trained with (its checkpoint's): read as it is, since
    it was validated when the run started; options of plug-ins it did not select are
    dropped."""
    return build(TrainConfig, config_from_mapping(data, source, lenient=True), strict=False, where=f"{source}: ")
