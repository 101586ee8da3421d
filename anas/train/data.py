"""Datasets and deterministic data loaders for supernet training and predictor data.

``load_data`` turns a ``DataConfig`` into ``DataSplits``: a training split with training
augmentation (also used for BN recalibration), an optional held-out part of the training
split with evaluation transforms (the accuracy-predictor data), and a validation split.
Every item is ``(float32 image [3, R, R], normalized; int label)``.

Datasets: ``digits`` (scikit-learn's 8x8 digits, embedded, never downloaded; the default),
``cifar10`` / ``cifar100`` (torchvision), ``imagefolder`` (``DATA_DIR/{train,val}/<class>/``)
and ``fake`` (seeded random tensors, for smoke tests). ``make_loader`` gives the same
batches in the same order for the same (seed, epoch), whatever ran before.

For label-free training (``DataConfig.label_free``) the training split gets MoCo v2's
stronger augmentation, an imagefolder ``train/`` may hold images without class
subfolders, and ``DataSplits.probe`` holds the labelled images a linear probe is fit on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from anas.errors import DataError, one_line

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder", "fake")
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIGITS_VAL_SIZE = 360
CONTRASTIVE_CROP_SCALE = (0.2, 1.0)  # MoCo v2's random resized crop
Stats = tuple[float, float, float]


@dataclass(frozen=True)
class DataConfig:
    name: str = "digits"  # one of DATASETS
    data_dir: str | None = None  # required for cifar10/cifar100/imagefolder
    download: bool = False  # cifar only: allow torchvision to download into data_dir
    resolution: int = 32  # images are delivered at this size (square)
    holdout: float = 0.0  # fraction of the training split held out (eval transforms), 0 <= h < 1
    seed: int = 0  # seeds the holdout split and the fake data
    fake_train_size: int = 256
    fake_val_size: int = 64
    fake_classes: int = 10
    label_free: bool = False  # label-free training: MoCo v2 augmentation, unlabelled train/, a probe split


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


class TensorImages(Dataset):
    """Precomputed un-normalized images [N, 3, R, R] with labels; normalizes each item and,
    when ``max_shift`` > 0, translates it by up to that many pixels (zero-filled); with a
    ``crop_scale`` range, then crops a random part of that area range and resizes it back
    (torchvision's ``RandomResizedCrop``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Stats, std: Stats,
                 max_shift: int = 0, crop_scale: tuple[float, float] | None = None):
        self.images, self.labels, self.max_shift = images, labels, max_shift
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.crop = None
        if crop_scale is not None:
            from torchvision.transforms import v2

            self.crop = v2.RandomResizedCrop(images.shape[-1], scale=crop_scale, antialias=True)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.max_shift > 0:
            image = random_translate(image, self.max_shift)
        if self.crop is not None:
            image = self.crop(image)
        return (image - self.mean) / self.std, int(self.labels[index])


class Views(Dataset):
    """Each item of ``dataset`` read ``count`` times: independently augmented views stacked
    ``[count, C, H, W]``, and the label (Pi-NAS's cross-path and contrastive training)."""

    def __init__(self, dataset: Dataset, count: int):
        self.dataset, self.count = dataset, count

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        views = [self.dataset[index] for _ in range(self.count)]
        return torch.stack([image for image, _ in views]), views[0][1]


class UnlabelledImages(Dataset):
    """The images under ``folder`` (any depth, torchvision's image extensions), sorted, each
    with label -1: a training split read for its images alone."""

    def __init__(self, folder: Path, transform):
        from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader

        self.paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
        if not self.paths:
            raise DataError(f"no images in {folder}")
        self.transform, self.loader = transform, default_loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.loader(str(self.paths[index]))), -1


def random_translate(image: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift ``image`` [C, H, W] by up to ``max_shift`` pixels each way, filling with zeros;
    the offsets come from torch's global RNG, so seeding torch reproduces them."""
    height, width = image.shape[-2:]
    top, left = torch.randint(0, 2 * max_shift + 1, (2,)).tolist()
    padded = F.pad(image, (max_shift, max_shift, max_shift, max_shift))
    return padded[:, top:top + height, left:left + width]


def load_data(config: DataConfig) -> DataSplits:
    """Build the train / calib / holdout / val splits that ``config`` describes."""
    _check_config(config)
    loaders = {"digits": _load_digits, "cifar10": _load_cifar, "cifar100": _load_cifar,
               "imagefolder": _load_imagefolder, "fake": _load_fake}
    train, plain_train, val, class_names, mean, std = loaders[config.name](config)
    labelled = not isinstance(train, UnlabelledImages)
    holdout = None
    if config.holdout > 0:
        if not labelled:
            raise DataError(f"--holdout needs labelled training images: {config.data_dir}/train has no class "
                            f"subfolders")
        train, holdout, plain_train = _split_holdout(train, plain_train, config.holdout, config.seed)
    probe = None
    if config.label_free:  # the probe fits on labelled training images, else on half of val
        probe, val = (plain_train, val) if labelled else _split_halves(val, config.seed)
    return DataSplits(train=train, calib=train, holdout=holdout, val=val, probe=probe,
                      num_classes=len(class_names), class_names=class_names, mean=mean, std=std)


def _check_config(config: DataConfig) -> None:
    if config.name not in DATASETS:
        raise DataError(f"unknown dataset {config.name!r}: choose one of {', '.join(DATASETS)}")
    if not 0 <= config.holdout < 1:
        raise DataError(f"holdout must be a fraction in [0, 1), got {config.holdout}")
    if config.resolution < 1:
        raise DataError(f"resolution must be a positive number of pixels, got {config.resolution}")
    if config.name == "fake" and min(config.fake_train_size, config.fake_val_size,
                                     config.fake_classes) < 1:
        raise DataError("fake data needs at least 1 training image, 1 validation image and 1 class")


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


def _load_digits(config: DataConfig):
    """scikit-learn's digits, upscaled to the resolution; a fixed 1437 / 360 split."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    pixels = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1)
    size = (config.resolution, config.resolution)
    images = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
    images, labels = images.repeat(1, 3, 1, 1), torch.from_numpy(bunch.target).long()
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(labels)))
    val_index, train_index = order[:DIGITS_VAL_SIZE], order[DIGITS_VAL_SIZE:]
    train_images, train_labels = images[train_index], labels[train_index]
    mean = (round(float(train_images.mean()), 4),) * 3
    std = (round(float(train_images.std()), 4),) * 3
    crop_scale = CONTRASTIVE_CROP_SCALE if config.label_free else None
    train = TensorImages(train_images, train_labels, mean, std, config.resolution // 8, crop_scale)
    plain = TensorImages(train_images, train_labels, mean, std)
    val = TensorImages(images[val_index], labels[val_index], mean, std)
    return train, plain, val, [str(d) for d in range(10)], mean, std


def _load_fake(config: DataConfig):
    """Random normal images with random labels, fixed by the seed; no augmentation."""
    generator = torch.Generator().manual_seed(config.seed)
    shape = (3, config.resolution, config.resolution)

    def draw(count: int) -> TensorImages:
        images = torch.randn((count, *shape), generator=generator)
        labels = torch.randint(config.fake_classes, (count,), generator=generator)
        return TensorImages(images, labels, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    train = draw(config.fake_train_size)
    val = draw(config.fake_val_size)
    names = [f"class{i}" for i in range(config.fake_classes)]
    return train, train, val, names, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def _load_cifar(config: DataConfig):
    """CIFAR-10/100 through torchvision: random crop and flip for training."""
    if config.data_dir is None:
        raise DataError(f"--data {config.name} needs --data-dir")
    mean, std = CIFAR_STATS[config.name]
    from torchvision import transforms  # torchvision is slow to import: only when needed

    resize = [transforms.Resize(config.resolution)] if config.resolution != 32 else []
    crop = (_moco_augmentation(32, blur=False) if config.label_free
            else [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])
    train_tf = transforms.Compose([*crop, *resize, transforms.ToTensor(), transforms.Normalize(mean, std)])
    eval_tf = transforms.Compose([*resize, transforms.ToTensor(), transforms.Normalize(mean, std)])
    train = _open_cifar(config, train=True, transform=train_tf, download=config.download)
    val = _open_cifar(config, train=False, transform=eval_tf, download=False)
    plain = _open_cifar(config, True, eval_tf, False) if config.holdout > 0 or config.label_free else train
    return train, plain, val, list(train.classes), mean, std


def _moco_augmentation(resolution: int, blur: bool) -> list:
    """MoCo v2's augmentation of PIL images: random resized crop of 20-100 % of the area,
    colour jitter (p 0.8), grayscale (p 0.2), Gaussian blur (p 0.5, ImageNet-sized images
    only), horizontal flip."""
    from torchvision import transforms

    kernel = max(3, resolution // 10 // 2 * 2 + 1)  # odd, about a tenth of the image
    return [transforms.RandomResizedCrop(resolution, scale=CONTRASTIVE_CROP_SCALE),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
            *([transforms.RandomApply([transforms.GaussianBlur(kernel, (0.1, 2.0))], p=0.5)] if blur else []),
            transforms.RandomHorizontalFlip()]


def _open_cifar(config: DataConfig, train: bool, transform, download: bool) -> Dataset:
    from torchvision import datasets

    cifar = datasets.CIFAR10 if config.name == "cifar10" else datasets.CIFAR100
    try:
        return cifar(root=config.data_dir, train=train, transform=transform, download=download)
    except RuntimeError:
        raise DataError(f"{config.name} not found in {config.data_dir}: "
                        f"pass --download to fetch it") from None
    except OSError as exc:  # a failed download, an unreadable folder
        raise DataError(f"cannot read or download {config.name} in {config.data_dir}: "
                        f"{one_line(exc)}") from None


def _load_imagefolder(config: DataConfig):
    """``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` with ImageNet-style
    transforms; for label-free training ``train/`` may hold images without class folders."""
    if config.data_dir is None:
        raise DataError("--data imagefolder needs --data-dir")
    root = Path(config.data_dir)
    if not root.is_dir():
        raise DataError(f"imagefolder data dir {root} does not exist or is not a folder")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"imagefolder data dir {root} has no {split}/ subfolder "
                            f"(expected {root}/train/<class>/ and {root}/val/<class>/)")
    res = config.resolution
    from torchvision import transforms

    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    augment = (_moco_augmentation(res, blur=True) if config.label_free
               else [transforms.RandomResizedCrop(res), transforms.RandomHorizontalFlip()])
    train_tf = transforms.Compose([*augment, transforms.ToTensor(), normalize])
    eval_tf = transforms.Compose([transforms.Resize(int(round(res / 0.875))),
                                  transforms.CenterCrop(res), transforms.ToTensor(), normalize])
    val = _open_image_folder(root / "val", eval_tf)
    if not _class_folders(root / "train"):
        if not config.label_free:
            raise DataError(f"no images in {root / 'train'}: expected class subfolders train/<class>/ "
                            f"(anas train --objective contrastive reads images without them)")
        train = UnlabelledImages(root / "train", train_tf)
        return train, train, val, list(val.classes), IMAGENET_MEAN, IMAGENET_STD
    train = _open_image_folder(root / "train", train_tf)
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise DataError(f"imagefolder data dir {root}: train/ and val/ have different classes "
                        f"(only in train: {', '.join(only_train) or '-'}; "
                        f"only in val: {', '.join(only_val) or '-'})")
    plain = _open_image_folder(root / "train", eval_tf) if config.holdout > 0 or config.label_free else train
    return train, plain, val, list(train.classes), IMAGENET_MEAN, IMAGENET_STD


def _class_folders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir()]


def _open_image_folder(folder: Path, transform):
    from torchvision import datasets

    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except FileNotFoundError as exc:  # no class folders, or a class folder without images
        raise DataError(f"no images in {folder}: {one_line(exc)}") from None


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int = 0,
                epoch: int = 0, workers: int = 0, drop_last: bool = False, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """A loader whose batches depend only on (seed, epoch): shuffling draws from a generator
    seeded with ``seed * 1000003 + epoch`` (or a ``DistributedSampler`` when
    ``world_size > 1``). The generator also seeds the workers, so with ``workers > 0`` their
    augmentation is reproducible too; with ``workers == 0`` it follows torch's global RNG."""
    sampler = None
    generator_seed = seed * 1000003 + epoch
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank,
                                     shuffle=shuffle, seed=seed, drop_last=drop_last)
        sampler.set_epoch(epoch)
        generator_seed += rank << 32  # ranks' workers augment differently
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, generator=torch.Generator().manual_seed(generator_seed),
                      num_workers=workers, drop_last=drop_last, persistent_workers=False,
                      pin_memory=torch.cuda.is_available())


def calibration_loader(dataset, batch_size: int, seed: int, workers: int = 0):
    """Training batches for BN recalibration: shuffled, the same for the same seed."""
    return make_loader(dataset, batch_size, shuffle=True, seed=seed + 1, workers=workers)


def evaluation_loader(dataset, batch_size: int, workers: int = 0, rank: int = 0, world_size: int = 1):
    """The whole split in order (no gradients, so twice the training batch fits); with
    ``world_size > 1``, this rank's shard: every ``world_size``-th image from ``rank`` on, so
    the shards cover the split exactly once."""
    if world_size > 1:
        dataset = Subset(dataset, range(rank, len(dataset), world_size))
    return make_loader(dataset, batch_size * 2, shuffle=False, workers=workers)
