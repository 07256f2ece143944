"""Both dates of a scene, read region by region: from two raster files, or from two tensors in memory.

A :class:`~densechange.finetune.inference.scene.Scene` reads its blocks through a :class:`PairReader`:
both dates over a region (past the scene's edge: the last row and column repeated) as ``(H, W, C)``
arrays, and where both hold data. Files come raw (their own dtype: uint8, uint16, ...), tensors as
the float32 the network takes; windows cut from either are made float the same way
(:func:`~densechange.datasets.io.images.to_float_batch`).

Two dates on different grids: when both are georeferenced and differ in CRS, resolution or extent,
B is resampled bilinearly onto A's grid on the fly (a GDAL warped virtual dataset, no copy).
Pixels outside B's footprint, or no-data in either date, are marked as lacking data.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from densechange.datasets import DatasetError
from densechange.datasets.io.raster import (WindowRequest, describe, footprints_meet, forward_rows, georef_of, marks_invalid,
                                            open_raster, read_window)


class PairReader(Protocol):
    """Both dates over a region, and where both hold data (None: everywhere)."""

    def read(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        ...


class PairSource:
    """Both dates of a scene, read region by region on A's grid (B warped onto it when the grids differ).

    PNG and JPEG dates, which GDAL can only decode from the top, are read forward in strips
    (:class:`~densechange.datasets.io.raster.ForwardRows`), so each row is decoded once.

    Use as a context manager. ``note`` says what was done to B, if anything.
    """

    def __init__(self, path_a: Path, path_b: Path) -> None:
        self.path_a, self.path_b = Path(path_a), Path(path_b)
        self.note: str | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "PairSource":
        try:
            self.a = forward_rows(self._stack.enter_context(open_raster(self.path_a)))
            b = self._stack.enter_context(open_raster(self.path_b))
            self.georef = georef_of(self.a)
            self.b, self.b_alpha = self._on_grid_of_a(b)
            if self.a.count != b.count:
                raise DatasetError(f"{self.path_a} has {self.a.count} bands but {self.path_b} has {b.count}: both dates "
                                   "must have the same bands.")
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

    def _on_grid_of_a(self, b: Any) -> tuple[Any, int | None]:
        a, ga, gb = self.a, georef_of(self.a), georef_of(b)
        if ga.same_grid(gb, a.height, a.width, b.height, b.width):
            return forward_rows(b), None
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
