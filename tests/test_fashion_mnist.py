"""Fashion-MNIST from IDX files the tests write themselves (a few dozen images), through
the same code path as the real files; one smoke test on the real files when Debian's
package is installed."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, one_line_error
from torchvision.datasets import FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from anas.data import DataConfig, load_data
from anas.data import fashion_mnist as fm
from anas.errors import DataError

TRAIN, TEST = 40, 20


def idx_bytes(array: np.ndarray, tmp_path) -> bytes:
    """``array`` in the IDX format (checked against torchvision's reader below)."""
    return fm.write_idx(tmp_path / "crafted-idx", array).read_bytes()


def sample_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    return images, (np.arange(count) % 10).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    """A Fashion-MNIST folder of 40 training and 20 test images, gzip-compressed as shipped."""
    fm.write_split(tmp_path, "train", *sample_images(TRAIN, 0))
    fm.write_split(tmp_path, "test", *sample_images(TEST, 1))
    return tmp_path


def load(folder, **kwargs):
    return load_data(DataConfig.named("fashion-mnist", data_dir=str(folder), **kwargs))


def test_splits_pixels_and_normalization(folder):
    splits = load(folder)
    assert (len(splits.train), len(splits.val), splits.num_classes) == (TRAIN, TEST, 10)
    assert splits.class_names == list(FashionMNIST.classes)
    images, labels = sample_images(TEST, 1)
    image, label = splits.val[3]
    assert image.shape == (3, 32, 32) and label == labels[3]
    pixels = image * torch.tensor(fm.STD).view(3, 1, 1) + torch.tensor(fm.MEAN).view(3, 1, 1)
    assert torch.allclose(pixels[:, 2:30, 2:30], torch.from_numpy(images[3]).float().div(255).expand(3, 28, 28),
                          atol=1e-6)
    assert torch.allclose(pixels[:, :2], torch.zeros(3, 2, 32), atol=1e-6)  # the black canvas around it


def test_reads_what_torchvision_reads_plain_and_in_its_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"  # where torchvision's --download puts the files
    raw.mkdir(parents=True)
    images, labels = sample_images(TRAIN, 0)
    fm.write_split(raw, "train", images, labels, suffix="")
    fm.write_split(raw, "test", *sample_images(TEST, 1), suffix="")
    mine_images, mine_labels = fm.read_split(tmp_path, "train")
    assert torch.equal(mine_images[:, 0], read_image_file(str(raw / "train-images-idx3-ubyte")))
    assert torch.equal(mine_labels, read_label_file(str(raw / "train-labels-idx1-ubyte")))
    assert len(load(tmp_path).train) == TRAIN


def test_augmentation_shifts_within_the_canvas_and_follows_torch_seed(folder):
    splits = load(folder)
    assert splits.train.flip and not splits.val.flip
    torch.manual_seed(0)
    views = torch.stack([splits.train[0][0] for _ in range(32)])
    assert len({tuple(v.flatten().tolist()) for v in views}) > 8  # shifted and flipped differently
    kept = (splits.train.images[0] != 0).sum()
    pixels = views[:, 0] * fm.STD[0] + fm.MEAN[0]
    assert all((view > 0.5 / 255).sum() == kept for view in pixels)  # no pixel leaves the canvas
    torch.manual_seed(0)
    assert torch.equal(views, torch.stack([splits.train[0][0] for _ in range(32)]))


def test_holdout_and_other_resolutions(folder):
    splits = load(folder, holdout=0.25, resolution=24)
    assert (len(splits.train), len(splits.holdout), len(splits.val)) == (30, 10, TEST)
    assert splits.train[0][0].shape == splits.val[0][0].shape == (3, 24, 24)


def test_missing_files_name_both_ways_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", tmp_path / "not-installed")
    with pytest.raises(DataError) as excinfo:
        load_data(DataConfig.named("fashion-mnist"))
    one_line_error(excinfo, "not-installed", "apt-get install dataset-fashion-mnist", "--data-dir", "--download")
    fm.write_split(tmp_path, "train", *sample_images(TRAIN, 0))
    with pytest.raises(DataError) as excinfo:
        load(tmp_path)
    one_line_error(excinfo, "t10k-images-idx3-ubyte", "apt-get install dataset-fashion-mnist")
    with pytest.raises(DataError, match="--download needs --data-dir"):
        load_data(DataConfig.named("fashion-mnist", download=True))


def corrupt(folder, name: str, change) -> None:
    path = folder / f"{name}.gz"
    path.write_bytes(change(path.read_bytes(), folder))


@pytest.mark.parametrize("name, change, fragments", [
    ("train-images-idx3-ubyte", lambda gz, tmp: gz[: len(gz) // 2], ["train-images-idx3-ubyte.gz", "cannot read"]),
    ("train-images-idx3-ubyte", lambda gz, tmp: gzip.compress(gzip.decompress(gz)[:-100]), ["truncated"]),
    ("t10k-labels-idx1-ubyte", lambda gz, tmp: gzip.compress(gzip.decompress(gz) + b"\0"), ["corrupt"]),
    ("train-images-idx3-ubyte", lambda gz, tmp: b"not a gzip file", ["cannot read"]),
    ("train-images-idx3-ubyte", lambda gz, tmp: gzip.compress(b"\x00\x00\x08"), ["not an IDX file"]),
    ("train-images-idx3-ubyte", lambda gz, tmp: gzip.compress(idx_bytes(np.zeros((4, 28), np.uint8), tmp)),
     ["2 dimension(s), expected 3"]),
    ("train-images-idx3-ubyte", lambda gz, tmp: gzip.compress(idx_bytes(np.zeros((TRAIN, 32, 32), np.uint8), tmp)),
     ["32x32 pixels"]),
    ("train-labels-idx1-ubyte", lambda gz, tmp: gzip.compress(idx_bytes(np.zeros(TRAIN - 1, np.uint8), tmp)),
     ["40 train images but 39 labels"]),
    ("train-labels-idx1-ubyte", lambda gz, tmp: gzip.compress(idx_bytes(np.full(TRAIN, 12, np.uint8), tmp)),
     ["label 12 is not one of"]),
])
def test_truncated_corrupt_and_mislabeled_files(folder, name, change, fragments):
    corrupt(folder, name, change)
    with pytest.raises(DataError) as excinfo:
        load(folder)
    one_line_error(excinfo, *fragments)


def test_the_labels_file_in_place_of_the_images(folder):
    labels = (folder / "train-labels-idx1-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(labels)
    with pytest.raises(DataError) as excinfo:
        load(folder)
    one_line_error(excinfo, "1 dimension(s), expected 3 (images)")


def test_cli_without_the_package_exits_2_and_leaves_no_run(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_FOLDER", tmp_path / "not-installed")
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--data-dir", str(tmp_path / "elsewhere")]):
        result = run_cli("train", "--data", "fashion-mnist", "--epochs", "1", *extra)
        assert_one_line_error(result, "apt-get install dataset-fashion-mnist", "--data-dir")
        assert not (tmp_path / "runs").exists()


def test_cli_trains_and_later_stages_find_the_data(run_cli, folder, tmp_path):
    run = tmp_path / "run"
    trained = run_cli("train", "--data", "fashion-mnist", "--data-dir", folder, "--epochs", "1", "--batch-size", "8",
                      "--calib-batches", "1", "--sampler", "uniform", "--run-dir", run, "--json", "--quiet")
    assert trained.code == 0, trained.stderr
    assert json.loads(trained.stdout)["largest"]["acc1"] >= 0
    fitted = run_cli("predict-fit", "--run", run, "--samples", "12", "--kind", "linear", "--no-plot", "--quiet")
    assert fitted.code == 0, fitted.stderr
    found = run_cli("search", "--predictor", run, "--run", run, "--flops", "1-2", "--budget", "50", "--verify", "1",
                    "--quiet")
    assert found.code == 0, found.stderr
    exported = run_cli("export", "--run", run, "--to", "pt", "--json")
    assert exported.code == 0 and json.loads(exported.stdout)["ok"], exported.stderr


@pytest.mark.skipif(not fm.DEBIAN_FOLDER.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
@pytest.mark.slow
def test_real_files_smoke_one_epoch_on_a_fixed_subset(run_cli, tmp_path):
    """One epoch on the first 100 training and 25 test images of each class of the real files."""
    subset = fm.write_subset(tmp_path / "subset", fm.DEBIAN_FOLDER, 100, 25)
    result = run_cli("train", "--data", "fashion-mnist", "--data-dir", subset, "--epochs", "1", "--batch-size", "32",
                     "--warmup-epochs", "0", "--lr", "0.8", "--calib-batches", "4", "--run-dir", tmp_path / "run",
                     "--json", "--quiet")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["largest"]["acc1"] > 30  # 10 classes: chance is 10 %


def test_subset_keeps_the_first_images_of_each_class(folder, tmp_path):
    subset = fm.write_subset(tmp_path / "subset", folder, 2, None)
    images, labels = fm.read_split(subset, "train")
    all_images, all_labels = fm.read_split(folder, "train")
    assert labels.tolist() == list(range(10)) * 2  # the labels cycle 0-9 in the written folder
    assert torch.equal(images, all_images[:20])
    assert len(fm.read_split(subset, "test")[1]) == TEST


def test_a_header_announcing_more_than_any_file_holds(folder):
    header = bytes([0, 0, 0x08, 3]) + (2**32 - 1).to_bytes(4, "big") * 3
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + b"\0" * 100))
    with pytest.raises(DataError) as excinfo:
        load(folder)
    one_line_error(excinfo, "truncated", "4294967295x4294967295x4294967295")
