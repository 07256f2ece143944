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

from typing import Any

import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT

__all__ = ["warped_vrt"]


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
