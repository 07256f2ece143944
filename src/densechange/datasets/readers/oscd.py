"""OSCD (Onera Satellite Change Detection) read as it unpacks: per-band Sentinel-2 files become 13-band rasters.

The release keeps one GeoTIFF per band and date (``<city>/imgs_1/..._B01.tif`` ... ``_B12.tif``, at
10, 20 and 60 m), the city lists in ``train.txt`` / ``test.txt`` (comma-separated) and the change
maps in their own folders::

    Onera Satellite Change Detection dataset - Images/{train,test}.txt
    Onera Satellite Change Detection dataset - Images/<city>/imgs_1/<...>_B01.tif ... <...>_B12.tif (imgs_2/ alike)
    Onera Satellite Change Detection dataset - Train Labels/<city>/cm/cm.png      (0/255)
    Onera Satellite Change Detection dataset - Test Labels/<city>/cm/cm.png

Each date becomes one 13-band GDAL virtual raster (VRT) on the city's 10 m grid (B02's size and
georeferencing), in the order :data:`BAND_ORDER`: B01, B02, B03, B04, B05, B06, B07, B08, B8A,
B09, B10, B11, B12. The 20 m and 60 m bands are resampled bilinearly by GDAL as they are read; no
pixel is copied. The VRTs reference the band files by absolute path and are written to the
per-user cache (``DENSECHANGE_CACHE``, default ``~/.cache/densechange``, under ``oscd/``), so the
dataset folder may be read-only; they are rewritten whenever their content would change.
``train`` and ``test`` are the release's splits (there is no ``val``: set ``data.val_split=null``
or ``test``), and ``data.in_chans=13`` trains on every band.

Sources: rcdaudt.github.io/oscd; microsoft/torchgeo torchgeo/datasets/oscd.py (folders, ``cm/cm.png``);
Bobholamovic/CDLab src/data/oscd.py (band names, comma-separated city lists).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

from densechange.atomic import write_atomically
from densechange.datasets.errors import DatasetError, format_names
from densechange.datasets.io.files import index_folder
from densechange.datasets.io.raster import open_raster

__all__ = ["BAND_ORDER", "IMAGES", "LABELS", "CACHE_ENV", "matches", "splits", "cities", "samples", "date_vrt"]

BAND_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
"""Band order of the 13-band rasters (Sentinel-2's own order, B8A after B08)."""
IMAGES = "Onera Satellite Change Detection dataset - Images"
LABELS = {"train": "Onera Satellite Change Detection dataset - Train Labels",
          "test": "Onera Satellite Change Detection dataset - Test Labels"}
CACHE_ENV = "DENSECHANGE_CACHE"
_BAND = re.compile(r"(B0[1-9]|B1[0-2]|B8A)$", re.IGNORECASE)


def matches(base: Path) -> bool:
    """Whether ``base`` holds the OSCD images folder and a city list."""
    return (base / IMAGES).is_dir() and any((base / IMAGES / f"{s}.txt").is_file() for s in LABELS)


def splits(base: Path) -> list[str]:
    """The splits whose city list exists."""
    return sorted(s for s in LABELS if (base / IMAGES / f"{s}.txt").is_file())


def cities(base: Path, split: str) -> list[str]:
    """The cities of ``split`` from ``train.txt`` / ``test.txt`` (comma- or line-separated)."""
    if split not in LABELS:
        raise DatasetError(f"{base}: OSCD has the splits {sorted(LABELS)}, not {split!r}; set data.split (and "
                           "data.val_split=null or test) to one of those.")
    path = base / IMAGES / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(f"{path}: the city list of split {split!r} is missing.")
    return [c.strip() for c in re.split(r"[,\n]", path.read_text(encoding="utf-8-sig")) if c.strip()]


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "densechange").expanduser() / "oscd"


def _bands(folder: Path) -> dict[str, Path]:
    """The band files of one date folder, by band name (``B8A``), whatever their prefix."""
    found: dict[str, Path] = {}
    for stem, path in index_folder(folder).items():
        band = _BAND.search(stem)
        if band:
            found[band.group(1).upper()] = path
    missing = [b for b in BAND_ORDER if b not in found]
    if missing:
        raise DatasetError(f"{folder}: no file for the bands {format_names(missing, 13)} (files ending in _B01 ... "
                           "_B12 and _B8A); OSCD needs all 13.")
    return found


def _document(bands: dict[str, Path], label: str) -> str:
    """The VRT of the 13 bands on B02's grid; other resolutions are resampled bilinearly when read."""
    with open_raster(bands["B02"]) as ref:
        width, height, crs, transform = ref.width, ref.height, ref.crs, ref.transform
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if crs is not None:
        ET.SubElement(root, "SRS").text = crs.to_wkt()
        ET.SubElement(root, "GeoTransform").text = ", ".join(
            repr(float(v)) for v in (transform.c, transform.a, transform.b, transform.f, transform.d, transform.e))
    for number, name in enumerate(BAND_ORDER, start=1):
        with open_raster(bands[name]) as src:
            src_width, src_height, dtype, nodata = src.width, src.height, src.dtypes[0], src.nodata
        gdal_type = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
                     "float32": "Float32", "float64": "Float64"}[dtype]
        element = ET.SubElement(root, "VRTRasterBand", dataType=gdal_type, band=str(number))
        ET.SubElement(element, "Description").text = f"{name} ({label})"
        if nodata is not None:
            ET.SubElement(element, "NoDataValue").text = repr(float(nodata))
        source = ET.SubElement(element, "ComplexSource", resampling="bilinear")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = bands[name].resolve().as_posix()
        ET.SubElement(source, "SourceBand").text = "1"
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(src_width), ySize=str(src_height))
        ET.SubElement(source, "DstRect", xOff="0", yOff="0", xSize=str(width), ySize=str(height))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def date_vrt(date_folder: Path, label: str) -> Path:
    """The 13-band VRT of one date folder (``<city>/imgs_1``), written to the cache when its content changed."""
    document = _document(_bands(date_folder), label)
    key = hashlib.blake2b(str(date_folder.resolve()).encode(), digest_size=8).hexdigest()
    out = _cache_dir() / key / f"{date_folder.parent.name}_{date_folder.name}.vrt"
    if not out.is_file() or out.read_text() != document:
        write_atomically(out, lambda tmp: tmp.write_text(document), suffix=".vrt")
    return out


def samples(base: Path, split: str, skip_incomplete: bool = False) -> tuple[list[str], list[tuple[Path, ...]]]:
    """Cities of ``split`` and, for each, ``(13-band VRT of date 1, of date 2, cm/cm.png)``."""
    names, paths, lacking = [], [], []
    for city in cities(base, split):
        folder = base / IMAGES / city
        label = base / LABELS[split] / city / "cm" / "cm.png"
        dates = [folder / "imgs_1", folder / "imgs_2"]
        missing = [str(p) for p in (*dates, label) if not p.exists()]
        if missing:
            lacking.append(f"{city} (no {', '.join(missing)})")
            continue
        names.append(city)
        paths.append((date_vrt(dates[0], f"{city} date 1"), date_vrt(dates[1], f"{city} date 2"), label))
    if lacking and not skip_incomplete:
        raise DatasetError(f"{base / IMAGES / (split + '.txt')}: {len(lacking)} listed cities lack files: "
                           f"{format_names(lacking)}. Add them, or set data.skip_incomplete=true to skip them.")
    if lacking:
        warnings.warn(f"{base / IMAGES / (split + '.txt')}: skipping {len(lacking)} listed cities that lack files "
                      f"(data.skip_incomplete=true): {format_names(lacking)}", stacklevel=3)
    return names, paths
