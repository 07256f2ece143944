"""B on A's grid: the GDAL warped virtual raster that every command reads a second date through.

Two dates on different grids (another CRS, resolution or extent, both georeferenced) are paired
pixel by pixel only after B is resampled onto A's grid. ``densechange predict`` and evaluation
warp B on the fly (:class:`~densechange.finetune.inference.sources.PairSource`); ``densechange
stack`` and the OSCD reader write the same warp as a ``.vrt`` document, so training, ``check`` and
``evaluate`` read the very pixels ``predict`` computes. The warp is bilinear, as everywhere in the
toolkit, and copies no pixel: GDAL resamples B's blocks as they are read.

Example:
    >>> with open_raster("a.tif") as a, open_raster("b.tif") as b:
    ...     Path("b_on_a.vrt").write_text(warped_vrt(a, b))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.raster import describe, footprints_meet, georef_of

__all__ = ["needs_warp", "warped_vrt"]


def needs_warp(a: Any, b: Any, path_a: Path, path_b: Path, pair: str | None = None) -> bool:
    """Whether ``b`` (an open dataset) must be resampled onto the grid of ``a`` to pair them pixel by pixel.

    False when both cover the very same pixels; True when they differ but are both georeferenced and
    their footprints meet. Anything else cannot be paired: a :class:`DatasetError` naming ``pair``
    (default: both paths), since no warp could place B on A's grid.
    """
    ga, gb = georef_of(a), georef_of(b)
    if ga.same_grid(gb, a.height, a.width, b.height, b.width):
        return False
    pair = pair or f"{path_a} and {path_b}"
    if not (ga.georeferenced and gb.georeferenced):
        raise DatasetError(f"{pair}: the dates are {a.height}x{a.width} and {b.height}x{b.width} on different pixel "
                           "grids and are not both georeferenced, so B cannot be placed on A's grid. Give both a CRS "
                           "and transform, or co-register and crop them to one grid.")
    if not footprints_meet(describe(a, path_a), describe(b, path_b)):
        raise DatasetError(f"{pair}: the two dates do not overlap: their footprints do not intersect, so they show "
                           "different places.")
    return True


def warped_vrt(a: Any, b: Any, *, nodata: float | None = None) -> str:
    """The VRT document of ``b`` (an open dataset) resampled bilinearly onto the grid of ``a``.

    B's source is referenced by its absolute path. Pixels of A's grid outside B's footprint read as
    ``nodata`` (default: B's no-data value; 0 without one), which the VRT declares when it is not None.
    """
    nodata = b.nodata if nodata is None else nodata
    with WarpedVRT(b, crs=a.crs, transform=a.transform, width=a.width, height=a.height,
                   resampling=Resampling.bilinear, nodata=nodata) as warped, MemoryFile(ext=".vrt") as memory:
        rasterio.shutil.copy(warped, memory.name, driver="VRT")
        return memory.read().decode()
