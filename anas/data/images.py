"""Image datasets of tensors, and the augmentations that work on them."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from anas.errors import DataError

Stats = tuple[float, float, float]


class TensorImages(Dataset):
    """Precomputed un-normalized images [N, C, R, R] with labels: C is 3, or 1 for grayscale
    (spread over 3 channels by the normalization); float in [0, 1], or uint8 (0-255, a
    quarter of the memory). Each item is normalized; when ``max_shift`` > 0 it is first
    translated by up to that many pixels (zero-filled); with ``flip``, mirrored left-right
    with probability 1/2; with a ``crop_scale`` range, a random part of that area range is
    cropped and resized back (torchvision's ``RandomResizedCrop``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: Stats, std: Stats,
                 max_shift: int = 0, crop_scale: tuple[float, float] | None = None, flip: bool = False):
        self.images, self.labels, self.max_shift, self.flip = images, labels, max_shift, flip
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
        if image.dtype == torch.uint8:
            image = image.float().div_(255.0)
        if self.max_shift > 0:
            image = random_translate(image, self.max_shift)
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
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
