"""``densechange stats ROOT``: per-band mean and std of a dataset's images, as overrides to paste.

Normalisation statistics must describe the pixels the model sees, so they are computed on the
scale training uses (:func:`densechange.datasets.io.images.to_float_image`: integer rasters divided
by their dtype's maximum, floats as stored), over the valid pixels only (a raster's no-data value
or mask band, and non-finite values, are left out). Both dates of a change dataset count.

The images are sampled, not read whole: ``pixels`` pixels in windows of ``window x window`` placed
at seeded random positions, as many windows in each raster as its share of the dataset's area.
Each window is read alone (only its blocks are decoded for tiled or striped rasters; PNG and JPEG
files are decoded once for all their windows) and folded into running per-band sums with the
pairwise update of Chan et al., so memory stays that of one window (or one whole-file image)
whatever the dataset's size. When the dataset holds no more than ``pixels`` pixels, every pixel is
read and the result is exact.

Example:
    >>> result = dataset_stats("/data/S2Looking", split="train")
    >>> result.overrides()
    'data.mean=[0.3412,0.3581,0.3177] data.std=[0.1423,0.1361,0.1308]'
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import to_float_image
from densechange.datasets.io.raster import RasterWindows, raster_info
from densechange.datasets.readers.crops import crop_counts
from densechange.datasets.readers.layouts import Layout
from densechange.datasets.readers.locate import locate_images

__all__ = ["BandStats", "RunningMoments", "dataset_images", "dataset_stats", "raster_stats"]


class RunningMoments:
    """Per-band count, mean and sum of squared deviations, merged batch by batch (float64)."""

    def __init__(self, bands: int) -> None:
        self.count = 0
        self.mean = np.zeros(bands)
        self.m2 = np.zeros(bands)

    def add(self, values: np.ndarray) -> None:
        """Fold in ``(N, bands)`` values."""
        n = values.shape[0]
        if n == 0:
            return
        batch_mean = values.mean(axis=0)
        batch_m2 = ((values - batch_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + batch_m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (what a normalisation divides by)."""
        return np.sqrt(self.m2 / max(self.count, 1))


@dataclass(frozen=True)
class BandStats:
    """What :func:`dataset_stats` found."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixels: int  # valid pixels counted
    rasters: int
    dtypes: tuple[str, ...]
    exact: bool  # every pixel was read
    where: str = ""

    def overrides(self, digits: int = 4) -> str:
        """``data.mean=[...] data.std=[...]``, ready to paste after a config file."""
        def fmt(values: Sequence[float]) -> str:
            return "[" + ",".join(_round(v, digits) for v in values) + "]"
        return f"data.mean={fmt(self.mean)} data.std={fmt(self.std)}"


def _round(value: float, digits: int) -> str:
    """``digits`` decimals, or as many significant digits below 0.1 (uint16 reflectances scale to ~0.01)."""
    if value != 0 and abs(value) < 0.1:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def _valid_values(arr: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """``(h, w, C)`` stored pixels -> ``(N, C)`` float64 on the training scale, valid and finite only."""
    scaled = to_float_image(arr).numpy().reshape(arr.shape[2], -1).T.astype(np.float64)
    keep = np.isfinite(scaled).all(axis=1)
    if valid is not None:
        keep &= valid.reshape(-1)
    return scaled[keep]


def _starts(length: int, window: int) -> list[int]:
    return list(range(0, length, window))


def raster_stats(paths: Sequence[Path], *, pixels: int = 2_000_000, window: int = 64, seed: int = 0,
                 where: str = "") -> BandStats:
    """Per-band mean and std of ``paths`` (see the module docstring); all must have one band count."""
    if not paths:
        raise DatasetError(f"{where or 'dataset'}: no image to compute statistics of.")
    if pixels < 1 or window < 1:
        raise DatasetError(f"pixels={pixels} window={window}: both must be positive.")
    infos = [raster_info(p) for p in paths]
    bands = {i.count for i in infos}
    if len(bands) > 1:
        odd = next(i for i in infos if i.count != infos[0].count)
        raise DatasetError(f"{odd.path} has {odd.count} bands but {infos[0].path} has {infos[0].count}: one "
                           "normalisation needs one band count. Run `densechange check` on the dataset.")
    areas = [i.area for i in infos]
    exact = sum(areas) <= pixels
    if exact:
        counts = None
    else:
        counts = crop_counts(areas, window, total=max(1, math.ceil(pixels / window**2)))
    rng = np.random.default_rng(seed)
    moments = RunningMoments(infos[0].count)
    for index, info in enumerate(infos):
        if exact:
            corners = [(y, x) for y in _starts(info.height, window) for x in _starts(info.width, window)]
        else:
            n = int(counts[index])
            tops = rng.integers(0, max(info.height - window, 0) + 1, n)
            lefts = rng.integers(0, max(info.width - window, 0) + 1, n)
            corners = list(zip(tops.tolist(), lefts.tolist()))
        if not corners:
            continue
        with RasterWindows(info.path) as raster:
            for top, left in corners:
                h, w = min(window, info.height - top), min(window, info.width - left)
                moments.add(_valid_values(*raster.read(top, left, h, w)))
    if moments.count == 0:
        raise DatasetError(f"{where or 'dataset'}: every sampled pixel is no-data; nothing to compute statistics of.")
    return BandStats(tuple(moments.mean.tolist()), tuple(moments.std.tolist()), moments.count, len(infos),
                     tuple(sorted({i.dtype for i in infos})), exact, where)


def dataset_images(root: str | Path, kind: str = "auto", split: str | None = "train",
                   layout: Layout | None = None) -> tuple[list[Path], str]:
    """Every image of ``split`` (both dates of change pairs), and a description of where they came from.

    Labels are not needed: a folder of unlabelled pairs or images has statistics too.
    """
    found = locate_images(root, kind, split, layout)
    keep = 2 if found.layout.kind == "change" else 1  # the dates, or the image: a reader's samples carry their labels too
    files = [path for paths in found.paths for path in paths[:keep]]
    return files, f"{root} (layout {found.layout.name}, {found.where})"


def dataset_stats(root: str | Path, kind: str = "auto", split: str | None = "train", *, layout: Layout | None = None,
                  pixels: int = 2_000_000, window: int = 64, seed: int = 0) -> BandStats:
    """Per-band mean and std of the images of ``split`` of the dataset at ``root`` (see the module docstring)."""
    files, where = dataset_images(root, kind, split, layout)
    return raster_stats(files, pixels=pixels, window=window, seed=seed, where=where)
