"""CIFAR-10 and CIFAR-100 through torchvision: random crop and flip for training."""

from __future__ import annotations

from torch.utils.data import Dataset

from anas.data.augmentation import moco_augmentation
from anas.data.dataset import DataConfig, DownloadOptions, Loaded, register_dataset
from anas.errors import DataError, one_line

CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@register_dataset("cifar100", options=DownloadOptions)
@register_dataset("cifar10", options=DownloadOptions)
def load_cifar(config: DataConfig) -> Loaded:
    """CIFAR-10/100 through torchvision: random crop and flip for training."""
    options = config.dataset_options
    if options.data_dir is None:
        raise DataError(f"--data {config.name} needs --data-dir")
    mean, std = CIFAR_STATS[config.name]
    from torchvision import transforms  # torchvision is slow to import: only when needed

    resize = [transforms.Resize(config.resolution)] if config.resolution != 32 else []
    crop = (moco_augmentation(32, blur=False) if config.label_free
            else [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])
    train_tf = transforms.Compose([*crop, *resize, transforms.ToTensor(), transforms.Normalize(mean, std)])
    eval_tf = transforms.Compose([*resize, transforms.ToTensor(), transforms.Normalize(mean, std)])
    train = _open_cifar(config, train=True, transform=train_tf, download=options.download)
    val = _open_cifar(config, train=False, transform=eval_tf, download=False)
    plain = _open_cifar(config, True, eval_tf, False) if config.holdout > 0 or config.label_free else train
    return Loaded(train, plain, val, list(train.classes), mean, std)


def _open_cifar(config: DataConfig, train: bool, transform, download: bool) -> Dataset:
    from torchvision import datasets

    cifar = datasets.CIFAR10 if config.name == "cifar10" else datasets.CIFAR100
    try:
        return cifar(root=config.dataset_options.data_dir, train=train, transform=transform, download=download)
    except RuntimeError:
        raise DataError(f"{config.name} not found in {config.dataset_options.data_dir}: "
                        f"pass --download to fetch it") from None
    except OSError as exc:  # a failed download, an unreadable folder
        raise DataError(f"cannot read or download {config.name} in {config.dataset_options.data_dir}: "
                        f"{one_line(exc)}") from None
