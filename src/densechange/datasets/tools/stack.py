"""``densechange stack A.tif B.tif OUT.vrt``: both dates as one virtual raster, A's bands then B's.

Tools that run a model on one raster layer (QGIS with the Deepness plugin, say) need the two dates
of a change pair in one raster. A GDAL virtual raster (VRT) gives that without copying pixels:
band ``i`` of the stack reads band ``i`` of A for ``i <= C`` and band ``i - C`` of B after that, the
``gdalbuildvrt -separate`` layout. Every band keeps its source's data type and no-data value, and
the stack has A's size, CRS and transform.

When B lies on another grid (CRS, resolution or extent) and both dates are georeferenced, B is first
resampled bilinearly onto A's grid by a GDAL warped VRT written beside the stack
(``<OUT stem>_b_on_a.vrt``, also no copy), as the streaming predictor does on the fly; pixels
outside B's footprint read as B's no-data value (0 when B has none). Sources are referenced
relative to the VRT when they lie in or below its folder, so the files can move together.
Both files are written under a temporary name and renamed when complete.

Example:
    >>> report = stack_pair("city_2019.tif", "city_2023.tif", "city_pair.vrt")
    >>> report.bands, report.warped
    (6, None)
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasterio.dtypes import dtype_rev, typename_fwd
from rasterio.enums import ColorInterp

from densechange.atomic import write_atomically
from densechange.datasets.errors import DatasetError
from densechange.datasets.io.raster import open_raster
from densechange.datasets.io.sources import SourcePolicy, source_policy
from densechange.datasets.io.warp import needs_warp, warped_vrt

__all__ = ["StackReport", "stack_pair"]


@dataclass(frozen=True)
class StackReport:
    """What :func:`stack_pair` wrote: the stack, its band count, and B's warped VRT (None when B was on A's grid)."""

    path: Path
    bands: int
    warped: Path | None
    note: str | None = None


def _source_path(source: Path, vrt_folder: Path) -> tuple[str, str]:
    """``(path, relativeToVRT)``: relative when the source lies in or below the VRT's folder, else absolute."""
    source = source.resolve()
    try:
        return source.relative_to(vrt_folder.resolve()).as_posix(), "1"
    except ValueError:
        return source.as_posix(), "0"


def _band_element(root: ET.Element, number: int, src: Any, band: int, source: Path, vrt_folder: Path, label: str) -> None:
    """One ``VRTRasterBand`` that reads band ``band`` of the open dataset ``src`` (file ``source``) whole."""
    dtype = typename_fwd[dtype_rev[src.dtypes[band - 1]]]
    element = ET.SubElement(root, "VRTRasterBand", dataType=dtype, band=str(number))
    ET.SubElement(element, "Description").text = label
    if src.nodatavals[band - 1] is not None:
        ET.SubElement(element, "NoDataValue").text = repr(float(src.nodatavals[band - 1]))
    simple = ET.SubElement(element, "SimpleSource")
    path, relative = _source_path(source, vrt_folder)
    ET.SubElement(simple, "SourceFilename", relativeToVRT=relative).text = path
    ET.SubElement(simple, "SourceBand").text = str(band)
    block_y, block_x = src.block_shapes[band - 1]
    ET.SubElement(simple, "SourceProperties", RasterXSize=str(src.width), RasterYSize=str(src.height), DataType=dtype,
                  BlockXSize=str(block_x), BlockYSize=str(block_y))
    whole = dict(xOff="0", yOff="0", xSize=str(src.width), ySize=str(src.height))
    ET.SubElement(simple, "SrcRect", **whole)
    ET.SubElement(simple, "DstRect", **whole)


def _stack_document(a: Any, b: Any, path_a: Path, path_b: Path, vrt_folder: Path, name_b: str) -> str:
    """The VRT XML of A's bands followed by B's (``b``, file ``path_b``, already on A's grid; ``name_b`` its origin)."""
    root = ET.Element("VRTDataset", rasterXSize=str(a.width), rasterYSize=str(a.height))
    if a.crs is not None:
        ET.SubElement(root, "SRS").text = a.crs.to_wkt()
    if a.crs is not None or not a.transform.is_identity:
        t = a.transform
        ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    for date, src, source, name in (("A", a, path_a, path_a.name), ("B", b, path_b, name_b)):
        for band in range(1, src.count + 1):
            _band_element(root, (a.count if date == "B" else 0) + band, src, band, source, vrt_folder,
                          f"{date} band {band} ({name})")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _write_warped(a: Any, b: Any, out: Path) -> None:
    """B resampled bilinearly onto A's grid, as a GDAL warped VRT at ``out``."""
    document = warped_vrt(a, b)
    write_atomically(out, lambda tmp: tmp.write_text(document), suffix=".vrt")


def _check_pair(a: Any, b: Any, path_a: Path, path_b: Path) -> bool:
    """Whether B must be warped onto A's grid; a pair that cannot be stacked is a :class:`DatasetError`."""
    if a.count != b.count:
        raise DatasetError(f"{path_a} has {a.count} bands and {path_b} has {b.count}: the two dates of a change pair "
                           "must have the same bands.")
    for src, path in ((a, path_a), (b, path_b)):
        if src.colorinterp and src.colorinterp[0] == ColorInterp.palette:
            raise DatasetError(f"{path} is a palette image; a stack would hold its colour indices, not colours. "
                               "Convert it to RGB first.")
    return needs_warp(a, b, path_a, path_b)


def stack_pair(path_a: str | Path, path_b: str | Path, out: str | Path) -> StackReport:
    """Write ``out`` (``.vrt``): the bands of A, then those of B on A's grid.

    Args:
        path_a, path_b: the two dates (any raster GDAL reads), same band count.
        out: the stack; B's warped VRT, when one is needed, goes beside it.
    """
    path_a, path_b, out = Path(path_a), Path(path_b), Path(out)
    if out.suffix.lower() != ".vrt":
        raise DatasetError(f"{out}: the stack is a GDAL virtual raster; name it .vrt.")
    with open_raster(path_a) as a, open_raster(path_b.resolve()) as b:
        warp = _check_pair(a, b, path_a, path_b)
        warped, note = None, None
        if warp:
            warped = out.with_name(f"{out.stem}_b_on_a.vrt")
            _write_warped(a, b, warped)
            note = (f"{path_b.name} ({b.crs.to_string()}, {abs(b.transform.a):.4g} per pixel) is resampled bilinearly "
                    f"onto the grid of {path_a.name} ({a.crs.to_string()}, {abs(a.transform.a):.4g}) by {warped.name}")
        # B's warped VRT, written here, reads B wherever the user's B lies
        own = SourcePolicy(roots=(path_b.resolve().parent,), network=source_policy().network)
        with open_raster(warped, sources=own) if warped else open_raster(path_b) as b_on_a:
            document = _stack_document(a, b_on_a, path_a, warped or path_b, out.parent, path_b.name)
        count = a.count + b.count
    write_atomically(out, lambda tmp: tmp.write_text(document), suffix=".vrt")
    return StackReport(out, count, warped, note)
