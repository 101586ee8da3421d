"""Augmentations shared by datasets."""

from __future__ import annotations

CONTRASTIVE_CROP_SCALE = (0.2, 1.0)  # MoCo v2's random resized crop


def moco_augmentation(resolution: int, blur: bool) -> list:
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
