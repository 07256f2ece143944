"""Both dates of a scene, read region by region: from two raster files, or from two tensors in memory.

A :class:`~densechange.finetune.inference.scene.Scene` reads its blocks through a :class:`PairReader`:
both dates over a region (past the scene's edge: the last row and column repeated) as ``(H, W, C)``
arrays, and where both hold data. Files come raw (their own dtype: uint8, uint16, ...), tensors as
the float32 the network takes; windows cut from either are made float the same way
(:func:`~densechange.datasets.io.images.to_float_batch`).

Two dates on different grids: when both are georeferenced and differ in CRS, resolution or extent,
B is resampled bilinearly onto A's grid on the fly (a GDAL warped virtual dataset, no copy).
Pixels outside B's footprint, or no-data in either date, are marked as lacking data.

A ``region`` (``[top, left, height, width]`` in A's pixels) makes the pair that part of the scene
and nothing else (:class:`RegionView`): it is predicted as a crop of both dates would be, and only
the file blocks under it are read, which is what makes a small part of a large remote COG cheap.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from densechange.datasets import DatasetError
from densechange.datasets.io.raster import (WindowRequest, describe, footprints_meet, forward_rows, georef_of, marks_invalid,
                                            open_raster, read_window)
from densechange.datasets.io.remote import RasterRef


def as_source(path: str | Path | RasterRef) -> Path | RasterRef:
    """A local path as a ``Path``; a remote or in-memory raster as it is."""
    return path if isinstance(path, RasterRef) else Path(path)


class RegionView:
    """A window of an open dataset seen as a whole dataset of the window's size: every read is offset into it.

    Everything :func:`~densechange.datasets.io.raster.read_window` asks of a dataset (size, bands,
    masks, georeferencing) answers for the window, so reading past the region's edge pads it as
    reading past a file's edge does.
    """

    def __init__(self, src: Any, top: int, left: int, height: int, width: int) -> None:
        self.src, self.top, self.left, self.height, self.width = src, top, left, height, width

    def __getattr__(self, name: str) -> Any:
        return getattr(self.src, name)

    @property
    def transform(self) -> Any:
        return self.src.transform @ Affine.translation(self.left, self.top)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def _inside(self, window: Window | None) -> Window:
        if window is None:
            return Window(self.left, self.top, self.width, self.height)
        return Window(window.col_off + self.left, window.row_off + self.top, window.width, window.height)

    def read(self, indexes: Any = None, window: Window | None = None, **kwargs: Any) -> np.ndarray:
        return self.src.read(indexes, window=self._inside(window), **kwargs)

    def dataset_mask(self, window: Window | None = None, **kwargs: Any) -> np.ndarray:
        return self.src.dataset_mask(window=self._inside(window), **kwargs)


def check_region(region: Sequence[int], height: int, width: int, path: Any) -> tuple[int, int, int, int]:
    """``region`` as ``(top, left, height, width)`` when it lies inside a ``height x width`` scene, else a
    :class:`DatasetError`."""
    values = tuple(region)
    if len(values) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise DatasetError(f"region={list(values)}: give [top, left, height, width] in pixels of A, four integers.")
    top, left, rows, cols = values
    if top < 0 or left < 0 or rows < 1 or cols < 1 or top + rows > height or left + cols > width:
        raise DatasetError(f"region={list(values)} ([top, left, height, width]) does not lie inside {path}, which is "
                           f"{height} x {width} pixels.")
    return top, left, rows, cols


class PairReader(Protocol):
    """Both dates over a region, and where both hold data (None: everywhere)."""

    def read(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        ...


class PairSource:
    """Both dates of a scene, read region by region on A's grid (B warped onto it when the grids differ).

    PNG and JPEG dates, which GDAL can only decode from the top, are read forward in strips
    (:class:`~densechange.datasets.io.raster.ForwardRows`), so each row is decoded once.

    Use as a context manager. ``note`` says what was done to B, if anything. ``region``
    (``[top, left, height, width]`` in A's pixels) limits the pair to that part of A's grid.
    """

    def __init__(self, path_a: str | Path | RasterRef, path_b: str | Path | RasterRef,
                 region: Sequence[int] | None = None) -> None:
        self.path_a, self.path_b = as_source(path_a), as_source(path_b)
        self.region = region
        self.note: str | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "PairSource":
        try:
            a = self._stack.enter_context(open_raster(self.path_a))
            b = self._stack.enter_context(open_raster(self.path_b))
            on_a, self.b_alpha = self._on_grid_of_a(a, b)
            if a.count != b.count:
                raise DatasetError(f"{self.path_a} has {a.count} bands but {self.path_b} has {b.count}: both dates "
                                   "must have the same bands.")
            if self.region is not None:
                top, left, rows, cols = check_region(self.region, a.height, a.width, self.path_a)
                a, on_a = RegionView(a, top, left, rows, cols), RegionView(on_a, top, left, rows, cols)
            self.a, self.b = forward_rows(a), forward_rows(on_a)
            self.georef = georef_of(self.a)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    @property
    def height(self) -> int:
        return self.a.height

    @property
    def width(self) -> int:
        return self.a.width

    @property
    def bands(self) -> int:
        return self.a.count

    @property
    def may_lack_data(self) -> bool:
        """Whether some pixels can be no-data (a no-data value or mask in a date, or a warped B)."""
        return self.b_alpha is not None or marks_invalid(self.a) or marks_invalid(self.b)

    def _on_grid_of_a(self, a: Any, b: Any) -> tuple[Any, int | None]:
        """B itself, or B warped onto A's grid (then also the band of its alpha, when B has no no-data value)."""
        ga, gb = georef_of(a), georef_of(b)
        if ga.same_grid(gb, a.height, a.width, b.height, b.width):
            return b, None
        if not (ga.georeferenced and gb.georeferenced):
            raise DatasetError(
                f"{self.path_a} is {a.height}x{a.width} but {self.path_b} is {b.height}x{b.width}, and "
                f"{'neither is' if not (ga.georeferenced or gb.georeferenced) else 'only one is'} georeferenced, so B "
                "cannot be placed on A's grid: both dates must cover the same pixel grid. Co-register and crop them "
                "to a common extent, or give both a CRS and transform.")
        if not footprints_meet(describe(a, self.path_a), describe(b, self.path_b)):
            raise DatasetError(f"{self.path_a} and {self.path_b} do not overlap: their footprints do not intersect "
                               f"(A spans {tuple(a.bounds)} in {a.crs.to_string()}, B spans {tuple(b.bounds)} in "
                               f"{b.crs.to_string()}).")
        vrt = self._stack.enter_context(WarpedVRT(
            b, crs=a.crs, transform=a.transform, width=a.width, height=a.height, resampling=Resampling.bilinear,
            add_alpha=b.nodata is None, nodata=b.nodata))
        self.note = (f"note: {self.path_b.name} ({b.crs.to_string()}, {abs(b.transform.a):.4g} x {abs(b.transform.e):.4g} "
                     f"per pixel) is resampled bilinearly onto the grid of {self.path_a.name} ({a.crs.to_string()}, "
                     f"{abs(a.transform.a):.4g} x {abs(a.transform.e):.4g}); the outputs cover {self.path_a.name}'s grid "
                     "with no-data outside the intersection of the two footprints.")
        return vrt, (b.count + 1 if b.nodata is None else None)

    def read(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Both dates over a region (past the scene: the last row and column repeated) and where both hold data.

        The validity is None when neither date can lack data (then padding past the scene is not marked either).
        """
        edge = WindowRequest(top, left, height, width, pad="edge")
        if not self.may_lack_data:
            a = read_window(self.a, edge, path=self.path_a)[0]
            return a, read_window(self.b, edge, path=self.path_b)[0], None
        a, valid_a = read_window(self.a, edge, path=self.path_a)
        bands = list(range(1, self.b.count + 1)) if self.b_alpha is None else list(range(1, self.b_alpha))
        b, valid_b = read_window(self.b, replace(edge, bands=bands), path=self.path_b)
        if self.b_alpha is not None:
            alpha = read_window(self.b, WindowRequest(top, left, height, width, bands=(self.b_alpha,), fill=0))[0]
            valid_b = alpha[..., 0] > 0 if valid_b is None else valid_b & (alpha[..., 0] > 0)
        if valid_a is None or valid_b is None:
            return a, b, valid_b if valid_a is None else valid_a
        return a, b, valid_a & valid_b


class TensorPair:
    """Two dates held in memory, ``(C, H, W)`` float tensors, read as ``(H, W, C)`` float32 arrays.

    They are padded once, by edge replication, to ``height x width`` (the window grid's padded size),
    as a raster file is read past its edge.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, height: int, width: int) -> None:
        pad = (0, width - a.shape[-1], 0, height - a.shape[-2])
        dates = [t.detach().to("cpu", torch.float32)[None] for t in (a, b)]
        if any(pad):
            dates = [F.pad(t, pad, mode="replicate") for t in dates]
        self.a, self.b = (t[0].permute(1, 2, 0).numpy() for t in dates)

    def read(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, None]:
        rows, cols = slice(top, top + height), slice(left, left + width)
        return self.a[rows, cols], self.b[rows, cols], None
