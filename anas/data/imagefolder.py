"""Images in class folders (``DATA_DIR/{train,val}/<class>/``) with ImageNet-style
transforms; for label-free training ``train/`` may hold images without class folders."""

from __future__ import annotations

from pathlib import Path

from anas.data.augmentation import moco_augmentation
from anas.data.dataset import DataConfig, DataFolderOptions, Loaded, register_dataset
from anas.data.images import UnlabelledImages
from anas.errors import DataError, one_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register_dataset("imagefolder", options=DataFolderOptions)
def load_imagefolder(config: DataConfig) -> Loaded:
    """``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*`` with ImageNet-style
    transforms; for label-free training ``train/`` may hold images without class folders."""
    folder = config.dataset_options.data_dir
    if folder is None:
        raise DataError("--data imagefolder needs --data-dir")
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"imagefolder data dir {root} does not exist or is not a folder")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"imagefolder data dir {root} has no {split}/ subfolder "
                            f"(expected {root}/train/<class>/ and {root}/val/<class>/)")
    res = config.resolution
    from torchvision import transforms

    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    augment = (moco_augmentation(res, blur=True) if config.label_free
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
        return Loaded(train, train, val, list(val.classes), IMAGENET_MEAN, IMAGENET_STD)
    train = _open_image_folder(root / "train", train_tf)
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))
        only_val = sorted(set(val.classes) - set(train.classes))
        raise DataError(f"imagefolder data dir {root}: train/ and val/ have different classes "
                        f"(only in train: {', '.join(only_train) or '-'}; "
                        f"only in val: {', '.join(only_val) or '-'})")
    plain = _open_image_folder(root / "train", eval_tf) if config.holdout > 0 or config.label_free else train
    return Loaded(train, plain, val, list(train.classes), IMAGENET_MEAN, IMAGENET_STD)


def _class_folders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir()]


def _open_image_folder(folder: Path, transform):
    from torchvision import datasets

    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except FileNotFoundError as exc:  # no class folders, or a class folder without images
        raise DataError(f"no images in {folder}: {one_line(exc)}") from None
