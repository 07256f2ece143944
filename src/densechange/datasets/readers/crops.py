"""Training crops in proportion to area, read as windows.

A dataset of three 20,000² scenes should train as well as the same area cut into 256² tiles. So an
epoch draws crops from each raster in proportion to its area (by default as many crops as tiles of
the crop size would cover it, at least one per raster), and each crop is read as a window: for
tiled or striped GeoTIFF and COG only the blocks under the crop are decoded.

Sample ``i`` of an epoch is crop ``i`` of the plan; which raster it comes from depends only on
the raster sizes, and where it lies only on ``(seed, epoch, i)`` (see :mod:`densechange.datasets.transforms.geometry`).

Example:
    >>> plan = CropPlan([(20000, 20000), (512, 512)], crop_size=256)
    >>> len(plan), plan.file_of(0), plan.file_of(len(plan) - 1)
    (6108, 0, 1)
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.raster import PILLOW_SUFFIXES, raster_info

__all__ = ["CropPlan", "crop_counts", "image_size", "scan_sizes"]


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of a raster from its header; no pixel is decoded."""
    if path.suffix.lower() in PILLOW_SUFFIXES:
        try:
            with Image.open(path) as im:
                return im.height, im.width
        except (OSError, SyntaxError, ValueError) as err:
            raise DatasetError(f"{path}: cannot read the image header ({err}); the file is corrupt or not an image.") from err
    info = raster_info(path)
    return info.height, info.width


def scan_sizes(samples: Sequence[Sequence[Path]]) -> list[tuple[int, int]]:
    """The size of every sample, whose files (image and mask, or A, B and label) must share it.

    Headers are read in threads (GDAL and pillow release the GIL), once per dataset.
    """
    def one(files: Sequence[Path]) -> tuple[int, int]:
        sizes = [image_size(f) for f in files]
        if len(set(sizes)) > 1:
            shown = ", ".join(f"{f} is {h}x{w}" for f, (h, w) in zip(files, sizes))
            raise DatasetError(f"{shown}: the files of one sample must cover the same pixel grid.")
        return sizes[0]

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, samples))


def crop_counts(areas: Sequence[int], crop_size: int, total: int | None = None) -> np.ndarray:
    """Crops per raster in proportion to ``areas``.

    Args:
        areas: pixels of each raster.
        crop_size: side of a crop.
        total: crops per epoch; None: ``area / crop_size²`` for each raster, rounded, and at least one.
    Returns:
        int64 counts that sum to ``total`` (largest-remainder rounding, so no raster is favoured).
    """
    a = np.asarray(areas, dtype=np.float64)
    if total is None:
        return np.maximum(np.rint(a / float(crop_size) ** 2), 1).astype(np.int64)
    if total < 1:
        raise DatasetError(f"crops per epoch must be positive, got {total}.")
    share = a / a.sum() * total
    counts = np.floor(share).astype(np.int64)
    rest = int(total - counts.sum())
    if rest:
        order = np.argsort(-(share - counts), kind="stable")
        counts[order[:rest]] += 1
    return counts


class CropPlan:
    """Which raster each sample index of an epoch is cut from.

    Args:
        sizes: ``(height, width)`` of each raster.
        crop_size: crop side; None: one whole-image sample per raster.
        crops_per_epoch: None for the area rule of :func:`crop_counts`.
        one_per_file: one crop per raster whatever its size (held-out sets that score each image once).
    """

    def __init__(self, sizes: Sequence[tuple[int, int]], crop_size: int | None, crops_per_epoch: int | None = None,
                 one_per_file: bool = False) -> None:
        if crop_size is None or one_per_file:
            counts = np.ones(len(sizes), np.int64)
        else:
            counts = crop_counts([h * w for h, w in sizes], crop_size, crops_per_epoch)
        self.counts = counts
        self.ends = np.cumsum(counts)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def samples_of(self, files: Sequence[int]) -> list[int]:
        """The sample indices cut from ``files``, in order: a subset of rasters keeps its crops."""
        starts = self.ends - self.counts
        return [int(i) for f in files for i in range(starts[f], self.ends[f])]

    def file_of(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        return int(np.searchsorted(self.ends, index, side="right"))
