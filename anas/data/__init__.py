"""Datasets by name (``digits``, ``fake``, ``cifar10``, ``cifar100``, ``imagefolder``) and
deterministic loaders. Importing this package registers the built-in datasets."""

from anas.data import digits, cifar, imagefolder, fake  # noqa: F401, I001  (register the built-ins, in this order)
from anas.data.dataset import (
    DATASETS,
    DataConfig,
    DataFolderOptions,
    DataSplits,
    Loaded,
    load_data,
    register_dataset,
)
from anas.data.images import TensorImages, Views
from anas.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD
from anas.data.loaders import calibration_loader, evaluation_loader, make_loader

__all__ = ["DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "DataConfig", "DataFolderOptions", "DataSplits", "Loaded",
           "TensorImages", "Views", "calibration_loader", "evaluation_loader", "load_data", "make_loader",
           "register_dataset"]
