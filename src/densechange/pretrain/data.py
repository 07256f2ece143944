"""The datasets a pretraining or probe config names: labelled image-mask sets, image-only sources, change pairs.

``data.root`` is a folder or ``synthetic`` (the embedded generator). Labelled sets are
:class:`densechange.datasets.ImageMaskDataset`; the pseudo-mask mode only needs images, so it reads them
through an *image source*: anything with ``names``, ``sizes``, ``__len__`` and
``read_window(index, top, left, height, width) -> ((h, w, C) array, valid or None)``, so that a
scene of any size is only ever read a window at a time. :class:`ImageFolder` is one for the image
folder of any image-mask layout (``A/``, ``image/``, Inria's ``images/``, LoveDA's ``images_png/``,
...), with no masks at all.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from torch.utils.data import Dataset, Subset

from densechange.datasets import (ChangeOptions, DatasetError, ImageMaskDataset, ImageMaskOptions, SyntheticImageMaskDataset,
                                  read_image)
from densechange.datasets.io.raster import Georef, raster_info, read_region
from densechange.datasets.readers.crops import scan_sizes
from densechange.datasets.readers.layouts import Layout, configured_layout
from densechange.datasets.readers.locate import detect_layout, image_layouts, locate
from densechange.engine.change_sets import change_set
from densechange.engine.errors import ConfigError

__all__ = ["ImageSource", "window_of_array", "ImageFolder", "SyntheticImages", "FirstImages", "build_labelled_dataset",
           "build_change_pairs", "build_change_probe_pairs",
           "build_image_source"]

class ImageSource(Protocol):
    names: list[str]
    sizes: list[tuple[int, int]]  # (height, width) of each image

    def __len__(self) -> int: ...

    def read(self, index: int) -> np.ndarray: ...

    def read_window(self, index: int, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Pixels of a window (zero past the image's edge) and where they are valid (None: everywhere)."""
        ...

    def georef(self, index: int) -> Georef:
        """Where image ``index`` lies (CRS, transform, no-data), for the rasters written from it."""
        ...


def window_of_array(arr: np.ndarray, top: int, left: int, height: int, width: int, fill: float = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """A window of an in-memory ``(H, W[, C])`` array, ``fill`` past its edges, and where it lies inside."""
    out = np.full((height, width, *arr.shape[2:]), fill, arr.dtype)
    r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + height, arr.shape[0]), min(left + width, arr.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = arr[r0:r1, c0:c1]
    if (r0, c0, r1, c1) == (top, left, top + height, left + width):
        return out, None
    valid = np.zeros((height, width), bool)
    valid[max(r0 - top, 0) : max(r1 - top, 0), max(c0 - left, 0) : max(c1 - left, 0)] = True
    return out, valid


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
        self._sizes: list[tuple[int, int]] | None = None

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """``(height, width)`` of every image, from the headers (read once, in threads)."""
        if self._sizes is None:
            self._sizes = scan_sizes([[p] for p in self.paths])
        return self._sizes

    def __len__(self) -> int:
        return len(self.names)

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as ``(H, W, C)`` in the file's dtype."""
        return read_image(self.paths[index])

    def read_window(self, index: int, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """A window of image ``index``: only the blocks under it are decoded (tiled GeoTIFF, COG)."""
        return read_region(self.paths[index], top, left, height, width)

    def georef(self, index: int) -> Georef:
        """The image's CRS and transform, from its header (none for a plain PNG)."""
        return raster_info(self.paths[index]).georef


class SyntheticImages:
    """The images (not the masks) of :class:`densechange.datasets.SyntheticImageMaskDataset`."""

    def __init__(self, num_images: int, size: int, seed: int) -> None:
        self.dataset = SyntheticImageMaskDataset(num_images=num_images, size=size, seed=seed)
        self.names = self.dataset.names
        self.sizes = [(int(size), int(size))] * len(self.names)

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, index: int) -> np.ndarray:
        return self.dataset.arrays(index)[0]

    def read_window(self, index: int, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        return window_of_array(self.read(index), top, left, height, width)

    def georef(self, index: int) -> Georef:
        return Georef()


class FirstImages(Subset):
    """The first ``n`` samples of a labelled dataset, keeping its ``num_classes``."""

    def __init__(self, dataset: Dataset, n: int) -> None:
        super().__init__(dataset, range(n))
        self.num_classes: int = dataset.num_classes  # type: ignore[attr-defined]


def build_labelled_dataset(root: str, split: str | None, options: ImageMaskOptions, *, synthetic_images: int = 64,
                           synthetic_size: int = 256, synthetic_classes: str = "building", max_images: int | None = None,
                           layout: Any = None) -> Dataset:
    """The image-mask dataset at ``root`` (``synthetic``: the embedded scenes), optionally its first ``max_images``.

    ``options`` says how samples are cut and decoded (held-out sets, probes, take one crop of each
    image with ``one_crop_per_image``; a training set draws crops in proportion to each image's
    area); its ``seed`` also seeds the embedded scenes. ``layout`` is a ``data.layout`` config
    section (None: detect the layout).
    """
    if root == "synthetic":
        dataset: Dataset = SyntheticImageMaskDataset(num_images=synthetic_images, size=synthetic_size, seed=options.seed,
                                                     classes=synthetic_classes)
    else:
        dataset = ImageMaskDataset(root, split, options, layout=configured_layout("image-mask", layout))
    if max_images is not None and max_images < 1:
        raise ConfigError(f"max_images={max_images}: expected a positive number of images, or null for all.")
    return FirstImages(dataset, max_images) if max_images is not None and max_images < len(dataset) else dataset


def build_change_pairs(root: str, split: str, options: ChangeOptions, *, layout: Any = None, synthetic_pairs: int = 16,
                       synthetic_size: int = 128, max_pairs: int | None = None) -> Dataset:
    """The change pairs of ``split`` for the change probe, read by the reader finetuning uses.

    Any layout (``layout``: a ``data.layout`` section), OSCD's bands, seeded crops (``options``),
    ``synthetic`` splits; ``max_pairs``: the first N samples only.
    """
    if max_pairs is not None and max_pairs < 1:
        raise ConfigError(f"max_images={max_pairs}: expected a positive number of pairs, or null for all.")
    dataset = change_set(root, split, options, layout=layout, synthetic_pairs=synthetic_pairs,
                         synthetic_size=synthetic_size)
    return Subset(dataset, range(max_pairs)) if max_pairs is not None and max_pairs < len(dataset) else dataset


def build_change_probe_pairs(root: str, split: str | None, test_split: str, options: ChangeOptions, *,
                             keys: tuple[str, str] = ("data.split", "data.test_split"),
                             **sources: Any) -> tuple[Dataset, Dataset]:
    """The training and test pairs of a change probe (:func:`build_change_pairs` with ``options`` and ``sources``:
    layout, synthetic pairs and size, max_pairs); ``split`` None: train.

    Two different splits: a head scored on the pairs it was fitted on would look better than it is.
    ``keys`` name the two settings in the error (``probe.split`` and ``probe.test_split`` in pretraining).
    """
    split = split or "train"
    if split == test_split:
        raise ConfigError(f"{keys[0]}={split} and {keys[1]}={test_split}: the change probe's head would be scored on "
                          "the pairs it was fitted on; give two different splits.")
    return build_change_pairs(root, split, options, **sources), build_change_pairs(root, test_split, options, **sources)


def build_image_source(root: str, split: str | None, *, seed: int, synthetic_images: int, synthetic_size: int,
                       layout: Any = None) -> ImageSource:
    """Images only, for the pseudo-mask mode: a folder (masks optional) or the embedded scenes."""
    if root == "synthetic":
        return SyntheticImages(synthetic_images, synthetic_size, seed)
    return ImageFolder(root, split, configured_layout("image-mask", layout))

