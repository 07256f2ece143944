"""Single bands of several rasters, at any resolutions, as one multi-band GDAL virtual raster on one grid.

Sentinel-2 keeps each band in its own file at 10, 20 or 60 m (OSCD's per-band GeoTIFFs, a STAC
item's assets). A VRT whose bands read those files, each resampled bilinearly onto a reference
grid as it is read, makes them one raster without copying a pixel: the OSCD reader writes it per
date (:func:`densechange.datasets.readers.oscd.date_vrt`), a STAC item is read through it
(:mod:`densechange.datasets.io.stac`). Every source covers the reference grid's extent; its pixels
are stretched onto it whole.

Example:
    >>> document = band_stack("B02.tif", [BandSource("B04.tif"), BandSource("B03.tif"), BandSource("B11.tif")])
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rasterio.dtypes import dtype_rev, typename_fwd

from densechange.datasets.io.raster import open_raster
from densechange.datasets.io.remote import RasterRef

__all__ = ["BandSource", "band_stack", "gdal_name"]


@dataclass(frozen=True)
class BandSource:
    """Band ``band`` of the raster ``path`` (a local file, or a URL's :class:`RasterRef`), described as ``description``."""

    path: str | Path | RasterRef
    band: int = 1
    description: str = ""


def gdal_name(path: str | Path | RasterRef) -> str:
    """What GDAL opens for ``path``: a local file's absolute path, a reference's GDAL name."""
    return path.gdal if isinstance(path, RasterRef) else Path(path).resolve().as_posix()


def band_stack(grid: str | Path | RasterRef, sources: Sequence[BandSource]) -> str:
    """The VRT document whose band ``i`` reads ``sources[i]`` resampled bilinearly onto the grid of ``grid``.

    Sources are named by absolute path (or GDAL name), so the document can be kept anywhere; each
    keeps its data type and no-data value.
    """
    with open_raster(grid) as ref:
        width, height, crs, transform = ref.width, ref.height, ref.crs, ref.transform
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if crs is not None:
        ET.SubElement(root, "SRS").text = crs.to_wkt()
        ET.SubElement(root, "GeoTransform").text = ", ".join(
            repr(float(v)) for v in (transform.c, transform.a, transform.b, transform.f, transform.d, transform.e))
    for number, source in enumerate(sources, start=1):
        with open_raster(source.path) as src:
            src_width, src_height = src.width, src.height
            dtype, nodata = src.dtypes[source.band - 1], src.nodatavals[source.band - 1]
        element = ET.SubElement(root, "VRTRasterBand", dataType=typename_fwd[dtype_rev[dtype]], band=str(number))
        ET.SubElement(element, "Description").text = source.description
        if nodata is not None:
            ET.SubElement(element, "NoDataValue").text = repr(float(nodata))
        complex_source = ET.SubElement(element, "ComplexSource", resampling="bilinear")
        ET.SubElement(complex_source, "SourceFilename", relativeToVRT="0").text = gdal_name(source.path)
        ET.SubElement(complex_source, "SourceBand").text = str(source.band)
        ET.SubElement(complex_source, "SrcRect", xOff="0", yOff="0", xSize=str(src_width), ySize=str(src_height))
        ET.SubElement(complex_source, "DstRect", xOff="0", yOff="0", xSize=str(width), ySize=str(height))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
