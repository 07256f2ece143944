"""The datasets a pretraining or probe config names: labelled image-mask sets and image-only sources.

``data.root`` is a folder or ``synthetic`` (the embedded generator). Labelled sets are
:class:`densechange.datasets.ImageMaskDataset`; the pseudo-mask mode only needs images, so it reads them
through an *image source*: anything with ``names``, ``__len__`` and ``read(index) -> (H, W, C)``
array. :class:`ImageFolder` is one for a folder with ``A/`` (or ``image/``) and no masks at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from densechange.datasets import DatasetError, ImageMaskDataset, SyntheticImageMaskDataset, read_image
from densechange.datasets.io.files import index_folder, select_names
from densechange.engine.errors import ConfigError

__all__ = ["ImageSource", "ImageFolder", "SyntheticImages", "FirstImages", "build_labelled_dataset",
           "build_image_source"]

IMAGE_FOLDERS = ("A", "image")


class ImageSource(Protocol):
    names: list[str]

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...


class ImageFolder:
    """Images of ``ROOT/A/`` or ``ROOT/image/``; a mask folder may exist but is never read.

    Args:
        root: dataset folder.
        split: name of a ``list/<split>.txt`` file; None, or no list folder, uses every image.
    """

    def __init__(self, root: str | Path, split: str | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found. Pass a folder that holds A/ (or image/).")
        folder = next((self.root / f for f in IMAGE_FOLDERS if (self.root / f).is_dir()), None)
        if folder is None:
            raise DatasetError(f"{self.root}: no image folder; expected {self.root}/A/ or {self.root}/image/.")
        images = index_folder(folder)
        self.names = select_names(self.root, split, [images])
        if not self.names:
            raise DatasetError(f"{folder}: no images (any raster format GDAL reads).")
        self.paths = [images[n] for n in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as ``(H, W, C)`` in the file's dtype."""
        return read_image(self.paths[index])


class SyntheticImages:
    """The images (not the masks) of :class:`densechange.datasets.SyntheticImageMaskDataset`."""

    def __init__(self, num_images: int, size: int, seed: int) -> None:
        self.dataset = SyntheticImageMaskDataset(num_images=num_images, size=size, seed=seed)
        self.names = self.dataset.names

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, index: int) -> np.ndarray:
        return self.dataset.arrays(index)[0]


class FirstImages(Subset):
    """The first ``n`` samples of a labelled dataset, keeping its ``num_classes``."""

    def __init__(self, dataset: Dataset, n: int) -> None:
        super().__init__(dataset, range(n))
        self.num_classes: int = dataset.num_classes  # type: ignore[attr-defined]


def build_labelled_dataset(
    root: str,
    split: str | None,
    *,
    crop_size: int | None,
    mask_mode: str = "auto",
    ignore_value: int | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    synthetic_images: int = 64,
    synthetic_size: int = 256,
    synthetic_classes: str = "building",
    max_images: int | None = None,
    skip_incomplete: bool = False,
    crops_per_epoch: int | None = None,
    one_crop_per_image: bool = True,
) -> Dataset:
    """The image-mask dataset at ``root`` (``synthetic``: the embedded scenes), optionally its first ``max_images``.

    Held-out sets (probes) take one crop of each image by default; a training set passes
    ``one_crop_per_image=False`` to draw crops in proportion to each image's area.
    """
    if root == "synthetic":
        dataset: Dataset = SyntheticImageMaskDataset(num_images=synthetic_images, size=synthetic_size, seed=seed,
                                                     classes=synthetic_classes)
    else:
        dataset = ImageMaskDataset(root, split, crop_size=crop_size, mask_mode=mask_mode, ignore_value=ignore_value,
                                   num_classes=num_classes, seed=seed, skip_incomplete=skip_incomplete,
                                   crops_per_epoch=crops_per_epoch, one_crop_per_image=one_crop_per_image)
    if max_images is not None and max_images < 1:
        raise ConfigError(f"max_images={max_images}: expected a positive number of images, or null for all.")
    return FirstImages(dataset, max_images) if max_images is not None and max_images < len(dataset) else dataset


def build_image_source(root: str, split: str | None, *, seed: int, synthetic_images: int, synthetic_size: int) -> ImageSource:
    """Images only, for the pseudo-mask mode: a folder (masks optional) or the embedded scenes."""
    if root == "synthetic":
        return SyntheticImages(synthetic_images, synthetic_size, seed)
    return ImageFolder(root, split)

