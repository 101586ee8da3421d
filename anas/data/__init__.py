"""Datasets by name (``digits``, ``fashion-mnist``, ``cifar10``, ``cifar100``,
``imagefolder``, ``fake``) and deterministic loaders. Importing this package registers the built-in datasets."""

# register the built-ins, in this order
from anas.data import digits, fashion_mnist, cifar, imagefolder, fake  # noqa: F401, I001
from anas.data.dataset import (
    DATASETS,
    DataConfig,
    DataFolderOptions,
    DownloadOptions,
    DataSplits,
    Loaded,
    load_data,
    register_dataset,
)
from anas.data.images import TensorImages, Views
from anas.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD
from anas.data.loaders import calibration_loader, evaluation_loader, make_loader

__all__ = ["DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "DataConfig", "DataFolderOptions", "DataSplits",
           "DownloadOptions", "Loaded", "TensorImages", "Views", "calibration_loader", "evaluation_loader",
           "load_data", "make_loader", "register_dataset"]
