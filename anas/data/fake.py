"""Random images with random labels, fixed by the seed: data for smoke tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anas.data.dataset import DataConfig, Loaded, register_dataset
from anas.data.images import TensorImages
from anas.options import option


@dataclass(frozen=True, kw_only=True)
class FakeOptions:
    fake_train_size: int = option(256, "Generated training images.", min=1)
    fake_val_size: int = option(64, "Generated validation images.", min=1)
    fake_classes: int = option(10, "Classes of the generated labels.", min=1)


@register_dataset("fake", options=FakeOptions)
def load_fake(config: DataConfig) -> Loaded:
    """Random normal images with random labels, fixed by the seed; no augmentation."""
    options = config.dataset_options
    generator = torch.Generator().manual_seed(config.seed)
    shape = (3, config.resolution, config.resolution)

    def draw(count: int) -> TensorImages:
        images = torch.randn((count, *shape), generator=generator)
        labels = torch.randint(options.fake_classes, (count,), generator=generator)
        return TensorImages(images, labels, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    train = draw(options.fake_train_size)
    val = draw(options.fake_val_size)
    names = [f"class{i}" for i in range(options.fake_classes)]
    return Loaded(train, train, val, names, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
