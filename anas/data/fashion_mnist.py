"""Fashion-MNIST (Zalando): 70,000 grayscale 28x28 images of 10 clothing classes, read from
its four IDX files (60,000 training, 10,000 test images; the test images are the
validation split).

The files are found in ``--data-dir``, else in the folder of Debian's package
``dataset-fashion-mnist`` (:data:`DEBIAN_FOLDER`), each either gzip-compressed (``.gz``,
as Zalando and Debian ship them) or plain, flat or in torchvision's layout
(``FashionMNIST/raw/``, what ``--download`` writes). Each file decodes once into one
uint8 tensor (the whole set in about 0.4 s on a 2-core CPU). The IDX reader is this
module's own rather than torchvision's ``read_image_file``, which reads only
uncompressed files and reports a corrupt one by ``assert``: here a truncated, corrupt or
mismatched file is one line naming it.

Images enter the supernet as the other grayscale data does: the 28x28 image is centred
on a 32x32 black canvas (LeNet-5's padding of MNIST: every pixel kept, none
interpolated), resized when the resolution is not 32, and its one channel is spread over
the three the supernet takes by the normalization, with Fashion-MNIST's own statistics.
Training augmentation: a random shift of up to 2 pixels each way (the canvas's margin,
so no garment leaves the frame) and a random left-right flip (garments are left-right
symmetric in kind: a mirrored shoe is still a shoe); no vertical flip, rotation or
colour change, which would make images the dataset does not hold.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anas.data.augmentation import CONTRASTIVE_CROP_SCALE
from anas.data.dataset import DataConfig, DownloadOptions, Loaded, register_dataset
from anas.data.images import TensorImages
from anas.errors import DataError, one_line
from anas.io import atomic_write

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_SIZE = 28
CANVAS = 32  # the 28x28 images are centred on a black canvas of this size
MAX_SHIFT = (CANVAS - IMAGE_SIZE) // 2
# Zalando's names of the labels 0-9 (torchvision's ``FashionMNIST.classes``, which costs a
# torchvision import to read)
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
NUM_CLASSES = len(CLASS_NAMES)
# Fashion-MNIST's statistics: mean and standard deviation of the 60,000 training images'
# pixels in [0, 1] (measured: 0.28604, 0.35302)
MEAN = (0.2860,) * 3
STD = (0.3530,) * 3
IDX_UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one Fashion-MNIST uses
HOW_TO_GET = ("install it with `apt-get install dataset-fashion-mnist`, pass --data-dir with its four IDX files, "
              "or pass --data-dir with --download where the network allows")


@register_dataset("fashion-mnist", options=DownloadOptions)
def load_fashion_mnist(config: DataConfig) -> Loaded:
    """The 60,000 training and 10,000 test images, decoded once into uint8 tensors."""
    options = config.dataset_options
    folder = Path(options.data_dir) if options.data_dir is not None else DEBIAN_FOLDER
    if options.download:
        download(options.data_dir)
    train_images, train_labels = read_split(folder, "train")
    val_images, val_labels = read_split(folder, "test")
    train_images, val_images = on_canvas(train_images, config.resolution), on_canvas(val_images, config.resolution)
    shift = MAX_SHIFT * config.resolution // CANVAS
    crop_scale = CONTRASTIVE_CROP_SCALE if config.label_free else None
    train = TensorImages(train_images, train_labels, MEAN, STD, shift, crop_scale, flip=True)
    plain = TensorImages(train_images, train_labels, MEAN, STD)
    val = TensorImages(val_images, val_labels, MEAN, STD)
    return Loaded(train, plain, val, list(CLASS_NAMES), MEAN, STD)


def download(data_dir: str | None) -> None:
    """Let torchvision download the four files into ``data_dir/FashionMNIST/raw/``."""
    if data_dir is None:
        raise DataError("--download needs --data-dir, the folder to download Fashion-MNIST into")
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(root=data_dir, train=True, download=True)
    except (RuntimeError, OSError) as exc:
        raise DataError(f"cannot download Fashion-MNIST into {data_dir}: {one_line(exc)}") from None


def read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The images [N, 1, 28, 28] (uint8) and labels [N] (int64) of ``split`` (train or
    test) from ``folder``."""
    image_path, label_path = (find_file(folder, name) for name in FILES[split])
    images, labels = read_idx(image_path, dims=3), read_idx(label_path, dims=1)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{image_path}: images of {images.shape[1]}x{images.shape[2]} pixels, "
                        f"Fashion-MNIST's are {IMAGE_SIZE}x{IMAGE_SIZE}")
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} {split} images but {len(labels)} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DataError(f"{label_path}: label {int(labels.max())} is not one of Fashion-MNIST's "
                        f"{NUM_CLASSES} classes (0-{NUM_CLASSES - 1})")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def find_file(folder: Path, name: str) -> Path:
    """``name`` or ``name.gz`` in ``folder`` or in torchvision's ``folder/FashionMNIST/raw``."""
    for parent in (folder, folder / "FashionMNIST" / "raw"):
        for candidate in (parent / f"{name}.gz", parent / name):
            if candidate.is_file():
                return candidate
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST not found: no folder {folder}; {HOW_TO_GET}")
    raise DataError(f"Fashion-MNIST not found: {folder} has no {name}[.gz]; {HOW_TO_GET}")


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``dims`` dimensions (gzip-compressed when its name
    ends in .gz), as an array; a file that is not one, or is cut short, is a DataError."""
    try:
        data = bytearray(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, not gzip, or a cut-off stream
        raise DataError(f"{path}: cannot read it ({one_line(exc)})") from None
    header = 4 + 4 * dims
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != IDX_UBYTE:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    if data[3] != dims:
        raise DataError(f"{path}: an IDX file of {data[3]} dimension(s), expected {dims} "
                        f"({'images' if dims == 3 else 'labels'})")
    if len(data) < header:
        raise DataError(f"{path}: truncated ({len(data)} bytes, shorter than its header)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=dims, offset=4))
    expected = header + math.prod(shape)  # Python integers: a hostile header cannot overflow
    if len(data) != expected:
        raise DataError(f"{path}: {'truncated' if len(data) < expected else 'corrupt'} ({len(data)} bytes; "
                        f"its header announces {'x'.join(map(str, shape))} values, {expected} bytes)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | Path, values: np.ndarray) -> Path:
    """Write ``values`` as an IDX file of unsigned bytes (gzip-compressed when ``path``
    ends in .gz): e.g. a subset of Fashion-MNIST for ``--data-dir``."""
    values = np.ascontiguousarray(values, dtype=np.uint8)
    data = bytes([0, 0, IDX_UBYTE, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape) + values.tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write(path, lambda temporary: temporary.write_bytes(data))


def write_subset(folder: str | Path, source: Path, train_per_class: int | None, test_per_class: int | None) -> Path:
    """Write the first ``*_per_class`` images of each class of ``source``'s training and
    test splits (all of a split for None) to ``folder`` as Fashion-MNIST's four .gz files."""
    folder = Path(folder)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        images, labels = read_split(source, split)
        keep = first_of_each_class(labels, per_class)
        write_split(folder, split, images[keep, 0].numpy(), labels[keep].numpy())
    return folder


def write_split(folder: str | Path, split: str, images: np.ndarray, labels: np.ndarray, suffix: str = ".gz") -> None:
    """Write ``images`` [N, 28, 28] and ``labels`` [N] as ``split``'s two IDX files in
    ``folder`` (gzip-compressed with the default ``suffix``, plain with "")."""
    image_name, label_name = FILES[split]
    write_idx(Path(folder) / f"{image_name}{suffix}", images)
    write_idx(Path(folder) / f"{label_name}{suffix}", labels)


def first_of_each_class(labels: torch.Tensor, per_class: int | None) -> torch.Tensor:
    """Indices, in file order, of the first ``per_class`` images of each class (all for None)."""
    if per_class is None:
        return torch.arange(len(labels))
    rank = torch.zeros_like(labels)
    for label in labels.unique():
        where = labels == label
        rank[where] = torch.arange(int(where.sum()))
    return (rank < per_class).nonzero().flatten()


def on_canvas(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """``images`` [N, 1, 28, 28] centred on a black 32x32 canvas, resized to ``resolution``
    when it is not 32 (bilinear, back to uint8)."""
    canvas = F.pad(images, (MAX_SHIFT,) * 4)
    if resolution == CANVAS:
        return canvas
    resized = F.interpolate(canvas.float(), size=(resolution, resolution), mode="bilinear", align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)
