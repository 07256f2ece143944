"""The datasets a pretraining or probe config names: labelled image-mask sets and image-only sources.

``data.root`` is a folder or ``synthetic`` (the embedded generator). Labelled sets are
:class:`densechange.datasets.ImageMaskDataset`; the pseudo-mask mode only needs images, so it reads them
through an *image source*: anything with ``names``, ``__len__`` and ``read(index) -> (H, W, C)``
array. :class:`ImageFolder` is one for the image folder of any image-mask layout (``A/``, ``image/``,
Inria's ``images/``, LoveDA's ``images_png/``, ...), with no masks at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from densechange.datasets import DatasetError, ImageMaskDataset, SyntheticImageMaskDataset, read_image
from densechange.datasets.readers.layouts import Layout, configured_layout
from densechange.datasets.readers.locate import detect_layout, image_layouts, locate
from densechange.engine.errors import ConfigError

__all__ = ["ImageSource", "ImageFolder", "SyntheticImages", "FirstImages", "build_labelled_dataset",
           "build_image_source"]

class ImageSource(Protocol):
    names: list[str]

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...


class ImageFolder:
    """Images of the image folder of an image-mask layout; a mask folder may exist but is never read.

    Args:
        root: dataset folder.
        split: a split folder or list file of the layout; None, or no list file, uses every image.
        layout: the layout whose image folder to read (default: the first known one found).
    """

    def __init__(self, root: str | Path, split: str | None = None, layout: Layout | None = None) -> None:
        self.root = Path(root)
        candidates = image_layouts(self.root, "image-mask", layout)
        if self.root.is_dir() and detect_layout(self.root, "image-mask", candidates) is None:
            folders = " or ".join(f"{self.root}/{lay.describe()}" for lay in candidates)
            raise DatasetError(f"{self.root}: no image folder; expected {folders} (each with its optional mask folder).")
        found = locate(self.root, "image-mask", split, layout=candidates)
        self.names, self.paths = found.names, [p[0] for p in found.paths]
        if not self.names:
            raise DatasetError(f"{found.base}: no images in {found.layout.folders[0]}/ ({found.where}; any raster "
                               "format GDAL reads).")

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
    layout: Any = None,
) -> Dataset:
    """The image-mask dataset at ``root`` (``synthetic``: the embedded scenes), optionally its first ``max_images``.

    Held-out sets (probes) take one crop of each image by default; a training set passes
    ``one_crop_per_image=False`` to draw crops in proportion to each image's area. ``layout`` is a
    ``data.layout`` config section (None: detect the layout).
    """
    if root == "synthetic":
        dataset: Dataset = SyntheticImageMaskDataset(num_images=synthetic_images, size=synthetic_size, seed=seed,
                                                     classes=synthetic_classes)
    else:
        dataset = ImageMaskDataset(root, split, crop_size=crop_size, mask_mode=mask_mode, ignore_value=ignore_value,
                                   num_classes=num_classes, seed=seed, skip_incomplete=skip_incomplete,
                                   crops_per_epoch=crops_per_epoch, one_crop_per_image=one_crop_per_image,
                                   layout=configured_layout("image-mask", layout))
    if max_images is not None and max_images < 1:
        raise ConfigError(f"max_images={max_images}: expected a positive number of images, or null for all.")
    return FirstImages(dataset, max_images) if max_images is not None and max_images < len(dataset) else dataset


def build_image_source(root: str, split: str | None, *, seed: int, synthetic_images: int, synthetic_size: int,
                       layout: Any = None) -> ImageSource:
    """Images only, for the pseudo-mask mode: a folder (masks optional) or the embedded scenes."""
    if root == "synthetic":
        return SyntheticImages(synthetic_images, synthetic_size, seed)
    return ImageFolder(root, split, configured_layout("image-mask", layout))

