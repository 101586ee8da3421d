"""Datasets by name, and the splits a run uses.

A dataset is a function registered with :func:`register_dataset` (``digits``, ``fake``,
``fashion-mnist``, ``cifar10``, ``cifar100``, ``imagefolder``), with the dataclass of its
own options (``--data-dir`` for the ones read from a folder). It turns a :class:`DataConfig` into
:class:`Loaded` images; :func:`load_data` makes the splits of a run from them
(:class:`DataSplits`): a training split with training augmentation (also used for BN
recalibration), an optional held-out part of the training split with evaluation
transforms (the accuracy-predictor data), and a validation split. Every item is ``(float32
image [C, R, R], normalized; int label)``.

For label-free training (``DataConfig.label_free``) the training split gets MoCo v2's
stronger augmentation, an imagefolder ``train/`` may hold images without class
subfolders, and ``DataSplits.probe`` holds the labelled images a linear probe is fit on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from torch.utils.data import Dataset, Subset

from anas.data.images import UnlabelledImages
from anas.errors import DataError
from anas.options import make, option
from anas.registry import Registry

Stats = tuple[float, float, float]


@dataclass(frozen=True, kw_only=True)
class DataFolderOptions:
    """The options of a dataset read from a folder."""

    data_dir: str | None = option(None, "Folder of the dataset's files (cifar10/100: CIFAR's files; fashion-mnist: "
                                        "its four IDX files, by default /usr/share/datasets/fashion-mnist; "
                                        "imagefolder: train/<class>/ and val/<class>/). For a trained run: the "
                                        "folder of its data, replacing the one it was trained with (e.g. the "
                                        "ImageNet folder of an imported supernet).")


@dataclass(frozen=True, kw_only=True)
class DownloadOptions(DataFolderOptions):
    """The options of a dataset that torchvision can download."""

    download: bool = option(False, "Let torchvision download the dataset into --data-dir.")


@dataclass(frozen=True)
class DataConfig:
    """What :func:`load_data` loads: a dataset by ``name`` with its ``options`` (None: the
    dataset's defaults), images of ``resolution`` pixels, a ``holdout`` fraction of the
    training split, the ``seed`` of the split (and of generated data)."""

    name: str = "digits"  # a registered dataset
    options: Any = None  # the dataset's options; None: its defaults
    resolution: int = 32  # images are delivered at this size (square)
    holdout: float = 0.0  # fraction of the training split held out (eval transforms), 0 <= h < 1
    seed: int = 0  # seeds the holdout split and generated data
    label_free: bool = False  # label-free training: MoCo v2 augmentation, unlabelled train/, a probe split

    @classmethod
    def named(cls, name: str = "digits", *, resolution: int = 32, holdout: float = 0.0, seed: int = 0,
              label_free: bool = False, **options: Any) -> DataConfig:
        """The config of dataset ``name`` with its options given by name."""
        return cls(name, make(DATASETS.entry(name).options, options), resolution, holdout, seed, label_free)

    @property
    def dataset_options(self) -> Any:
        return self.options if self.options is not None else DATASETS.entry(self.name).options()


class Loaded(NamedTuple):
    """What a dataset gives: its images, un-split."""

    train: Dataset  # the training images with training augmentation
    plain_train: Dataset  # the same images with evaluation transforms
    val: Dataset  # the validation images, evaluation transforms
    class_names: list[str]
    mean: Stats  # normalization applied to every split
    std: Stats


@dataclass
class DataSplits:
    train: Dataset  # training images minus holdout, with training augmentation
    calib: Dataset  # the same images and augmentation as train (BN recalibration)
    holdout: Dataset | None  # held-out training images, eval transforms; None when holdout == 0
    val: Dataset  # validation split, eval transforms
    probe: Dataset | None  # labelled training images, eval transforms, to fit a linear probe on (contrastive)
    num_classes: int
    class_names: list[str]
    mean: Stats  # normalization applied to every split
    std: Stats


DATASETS: Registry[Callable[[DataConfig], Loaded]] = Registry("dataset")
register_dataset = DATASETS.register


def load_data(config: DataConfig) -> DataSplits:
    """Build the train / calib / holdout / val splits that ``config`` describes."""
    load = DATASETS.get(config.name)
    _check_config(config)
    train, plain_train, val, class_names, mean, std = load(config)
    labelled = not isinstance(train, UnlabelledImages)
    holdout = None
    if config.holdout > 0:
        if not labelled:
            folder = getattr(config.dataset_options, "data_dir", None)
            raise DataError(f"--holdout needs labelled training images: {folder}/train has no class subfolders")
        train, holdout, plain_train = _split_holdout(train, plain_train, config.holdout, config.seed)
    probe = None
    if config.label_free:  # the probe fits on labelled training images, else on half of val
        probe, val = (plain_train, val) if labelled else _split_halves(val, config.seed)
    return DataSplits(train=train, calib=train, holdout=holdout, val=val, probe=probe,
                      num_classes=len(class_names), class_names=class_names, mean=mean, std=std)


def _check_config(config: DataConfig) -> None:
    if not 0 <= config.holdout < 1:
        raise DataError(f"holdout must be a fraction in [0, 1), got {config.holdout}")
    if config.resolution < 1:
        raise DataError(f"resolution must be a positive number of pixels, got {config.resolution}")


def _split_holdout(augmented: Dataset, plain: Dataset, fraction: float,
                   seed: int) -> tuple[Subset, Subset, Subset]:
    """Split the training images by a seeded permutation: the first ``round(fraction * n)``
    become the holdout (from ``plain``, eval transforms), the rest stay in training
    (returned from ``augmented`` and from ``plain``)."""
    total = len(augmented)
    count = round(fraction * total)
    if not 1 <= count <= total - 1:
        raise DataError(f"holdout {fraction} of {total} training images leaves {count} held out "
                        f"and {total - count} for training; both need at least 1")
    order = np.random.default_rng(seed).permutation(total).tolist()
    return Subset(augmented, order[count:]), Subset(plain, order[:count]), Subset(plain, order[count:])


def _split_halves(dataset: Dataset, seed: int) -> tuple[Subset, Subset]:
    """Two halves of ``dataset`` by a seeded permutation (the second gets the odd image)."""
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    half = len(order) // 2
    if half == 0:
        raise DataError(f"the validation split has {len(order)} image(s): a linear probe needs at least 2")
    return Subset(dataset, order[:half]), Subset(dataset, order[half:])
