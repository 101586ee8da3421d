"""scikit-learn's handwritten digits (8x8, embedded, never downloaded): the default data."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from anas.data.augmentation import CONTRASTIVE_CROP_SCALE
from anas.data.dataset import DataConfig, Loaded, register_dataset
from anas.data.images import TensorImages

DIGITS_VAL_SIZE = 360


@register_dataset("digits")
def load_digits(config: DataConfig) -> Loaded:
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
    return Loaded(train, plain, val, [str(d) for d in range(10)], mean, std)
