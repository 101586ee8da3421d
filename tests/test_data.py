from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from conftest import one_line_error
from PIL import Image

from anas.data import DataConfig, TensorImages, load_data, make_loader
from anas.errors import AnasError, DataError


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig.named())


def test_digits_splits_shapes_and_labels(digits):
    assert (len(digits.train), len(digits.val)) == (1437, 360)
    assert digits.calib is digits.train and digits.holdout is None
    assert digits.num_classes == 10 and digits.class_names == [str(d) for d in range(10)]
    assert digits.mean[0] == digits.mean[1] == digits.mean[2]
    image, label = digits.val[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert isinstance(label, int)
    labels = {digits.val[i][1] for i in range(len(digits.val))}
    assert labels == set(range(10))


def test_digits_training_images_are_roughly_normalized(digits):
    torch.manual_seed(0)
    images = torch.stack([digits.train[i][0] for i in range(0, len(digits.train), 3)])
    assert abs(float(images.mean())) < 0.1
    assert 0.8 < float(images.std()) < 1.2


def test_digits_validation_split_ignores_the_seed(digits):
    other = load_data(DataConfig.named(seed=7, resolution=16))
    assert [other.val[i][1] for i in range(50)] == [digits.val[i][1] for i in range(50)]


def test_digits_augmentation_translates_and_follows_torch_seed(digits):
    torch.manual_seed(1)
    first = [digits.train[0][0] for _ in range(8)]
    torch.manual_seed(1)
    again = [digits.train[0][0] for _ in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert any(not torch.equal(first[0], other) for other in first[1:])
    background = -digits.mean[0] / digits.std[0]
    assert float(torch.stack(first).min()) == pytest.approx(background, abs=1e-4)


def test_tensor_images_of_uint8_grayscale_flip_left_right():
    pixels = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    images = TensorImages(pixels, torch.tensor([3]), (0.0,) * 3, (1.0,) * 3, flip=True)
    expected = pixels[0].float().div(255).expand(3, 4, 4)
    torch.manual_seed(0)
    views = [images[0][0] for _ in range(20)]
    assert all(view.shape == (3, 4, 4) for view in views)
    assert any(torch.equal(v, expected) for v in views) and any(torch.equal(v, expected.flip(-1)) for v in views)
    assert all(torch.equal(v, expected) or torch.equal(v, expected.flip(-1)) for v in views)


def test_holdout_sizes_and_eval_transforms():
    splits = load_data(DataConfig.named(holdout=0.2, seed=3, resolution=16))
    assert len(splits.holdout) == round(0.2 * 1437)
    assert len(splits.train) + len(splits.holdout) == 1437
    assert splits.calib is splits.train
    torch.manual_seed(0)
    assert torch.equal(splits.holdout[5][0], splits.holdout[5][0])
    assert set(splits.holdout.indices).isdisjoint(splits.train.indices)
    again = load_data(DataConfig.named(holdout=0.2, seed=3, resolution=16))
    assert again.holdout.indices == splits.holdout.indices
    other = load_data(DataConfig.named(holdout=0.2, seed=4, resolution=16))
    assert other.holdout.indices != splits.holdout.indices


@pytest.mark.parametrize("holdout", [-0.1, 1.0, 1.5, 0.0001, 0.99999])
def test_bad_holdout(holdout):
    with pytest.raises(DataError, match="holdout") as excinfo:
        load_data(DataConfig.named(holdout=holdout, resolution=8))
    one_line_error(excinfo)


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(AnasError, match="unknown dataset 'mnist'") as excinfo:
        load_data(DataConfig.named(name="mnist"))
    one_line_error(excinfo, "digits", "cifar10", "cifar100", "imagefolder", "fake")


def batches(loader):
    return [(images.clone(), labels.clone()) for images, labels in loader]


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_make_loader_is_deterministic_per_seed_and_epoch(digits):
    subset = torch.utils.data.Subset(digits.train, range(200))

    def run(epoch: int, torch_seed: int = 0):
        torch.manual_seed(torch_seed)
        return batches(make_loader(subset, 32, shuffle=True, seed=5, epoch=epoch, drop_last=True))

    epoch2 = run(2)
    torch.rand(10)  # unrelated use of the global RNG in between must not matter once reseeded
    assert same_batches(epoch2, run(2))
    assert len(epoch2) == 200 // 32
    assert not torch.equal(epoch2[0][1], run(3)[0][1])
    # the order depends only on (seed, epoch), not on torch's global RNG
    assert torch.equal(torch.cat([b[1] for b in run(2, torch_seed=9)]),
                       torch.cat([b[1] for b in epoch2]))


def test_make_loader_without_shuffle_and_distributed(digits):
    plain = batches(make_loader(digits.val, 100, shuffle=False))
    assert [len(b[1]) for b in plain] == [100, 100, 100, 60]
    labels = torch.cat([b[1] for b in plain]).tolist()
    assert labels == [digits.val[i][1] for i in range(360)]
    parts = [make_loader(digits.val, 50, shuffle=True, seed=1, epoch=4, rank=r, world_size=2)
             for r in (0, 1)]
    orders = [list(iter(loader.sampler)) for loader in parts]
    assert set(orders[0]).isdisjoint(orders[1]) and len(orders[0]) == len(orders[1]) == 180
    assert orders == [list(iter(p.sampler)) for p in
                      (make_loader(digits.val, 50, shuffle=True, seed=1, epoch=4, rank=r,
                                   world_size=2) for r in (0, 1))]


def test_fake_data():
    config = DataConfig.named(name="fake", resolution=12, fake_train_size=20, fake_val_size=6,
                        fake_classes=4, seed=2)
    splits = load_data(config)
    assert (len(splits.train), len(splits.val), splits.num_classes) == (20, 6, 4)
    assert splits.class_names == ["class0", "class1", "class2", "class3"]
    assert splits.mean == (0.0, 0.0, 0.0) and splits.std == (1.0, 1.0, 1.0)
    image, label = splits.train[3]
    assert image.shape == (3, 12, 12) and 0 <= label < 4
    assert torch.equal(image, splits.train[3][0])
    assert not torch.equal(image, splits.val[3][0])
    assert torch.equal(load_data(config).train[3][0], image)
    assert not torch.equal(load_data(DataConfig.named(name="fake", resolution=12, seed=3)).train[3][0],
                           image)
    with_holdout = load_data(DataConfig.named(name="fake", resolution=12, holdout=0.25))
    assert (len(with_holdout.train), len(with_holdout.holdout)) == (192, 64)


def write_images(folder, classes, count=3, size=(10, 14)):
    rng = np.random.default_rng(0)
    for name in classes:
        (folder / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


def make_imagefolder(root, train_classes=("cat", "dog"), val_classes=("cat", "dog")):
    write_images(root / "train", train_classes)
    write_images(root / "val", val_classes)
    return root


def test_imagefolder_loads(tmp_path):
    root = make_imagefolder(tmp_path / "data")
    splits = load_data(DataConfig.named(name="imagefolder", data_dir=str(root), resolution=16))
    assert (len(splits.train), len(splits.val)) == (6, 6)
    assert splits.class_names == ["cat", "dog"] and splits.num_classes == 2
    assert splits.mean == (0.485, 0.456, 0.406)
    for dataset in (splits.train, splits.val):
        image, label = dataset[4]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 1
    images, labels = next(iter(make_loader(splits.train, 4, shuffle=True)))
    assert images.shape == (4, 3, 16, 16)
    held = load_data(DataConfig.named(name="imagefolder", data_dir=str(root), resolution=16,
                                holdout=0.5))
    assert (len(held.train), len(held.holdout)) == (3, 3)
    assert torch.equal(held.holdout[0][0], held.holdout[0][0])


def test_imagefolder_errors(tmp_path):
    def error(data_dir, *fragments):
        with pytest.raises(DataError) as excinfo:
            load_data(DataConfig.named(name="imagefolder", data_dir=data_dir, resolution=8))
        one_line_error(excinfo, *fragments)

    error(None, "--data-dir")
    error(str(tmp_path / "nowhere"), str(tmp_path / "nowhere"), "does not exist")
    only_train = tmp_path / "only_train"
    write_images(only_train / "train", ["a"])
    error(str(only_train), str(only_train), "val/")
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    write_images(empty / "val", ["a"])
    error(str(empty), str(empty / "train"), "no images")
    no_files = tmp_path / "no_files"
    (no_files / "train" / "a").mkdir(parents=True)
    write_images(no_files / "val", ["a"])
    error(str(no_files), str(no_files / "train"), "no images")
    mismatch = make_imagefolder(tmp_path / "mismatch", val_classes=("cat", "cow"))
    error(str(mismatch), str(mismatch), "different classes", "dog", "cow")


def test_cifar_needs_a_data_dir_and_never_downloads_unasked(tmp_path):
    with pytest.raises(DataError, match="--data cifar10 needs --data-dir"):
        load_data(DataConfig.named(name="cifar10"))
    with pytest.raises(DataError, match="pass --download") as excinfo:
        load_data(DataConfig.named(name="cifar100", data_dir=str(tmp_path)))
    one_line_error(excinfo, str(tmp_path), "cifar100")
    assert list(tmp_path.iterdir()) == []


class FakeCifar(torch.utils.data.Dataset):
    """Stands in for torchvision's CIFAR10: eight 32x32 PIL images per split."""

    classes = ["plane", "car"]

    def __init__(self, root, train, transform, download):
        assert not download
        self.transform, self.size = transform, 8 if train else 4

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        pixels = np.full((32, 32, 3), index * 20, dtype=np.uint8)
        return self.transform(Image.fromarray(pixels)), index % 2


def test_cifar_transforms_and_holdout(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCifar)
    splits = load_data(DataConfig.named(name="cifar10", data_dir=str(tmp_path), resolution=24,
                                  holdout=0.25))
    assert splits.class_names == ["plane", "car"]
    assert (len(splits.train), len(splits.holdout), len(splits.val)) == (6, 2, 4)
    assert splits.train[0][0].shape == splits.val[0][0].shape == (3, 24, 24)
    assert torch.equal(splits.holdout[1][0], splits.holdout[1][0])
