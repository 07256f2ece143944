"""OSCD (Onera Satellite Change Detection) read as it unpacks: per-band Sentinel-2 files become multi-band rasters.

The release keeps one GeoTIFF per band and date (``<city>/imgs_1/..._B01.tif`` ... ``_B12.tif``, at
10, 20 and 60 m), the city lists in ``train.txt`` / ``test.txt`` (comma-separated) and the change
maps in their own folders::

    Onera Satellite Change Detection dataset - Images/{train,test}.txt
    Onera Satellite Change Detection dataset - Images/<city>/imgs_1/<...>_B01.tif ... <...>_B12.tif (imgs_2/ alike)
    Onera Satellite Change Detection dataset - Images/<city>/imgs_1_rect/B01.tif ...       (some copies only)
    Onera Satellite Change Detection dataset - Train Labels/<city>/cm/{cm.png,<city>-cm.tif}
    Onera Satellite Change Detection dataset - Test Labels/<city>/cm/cm.png

What is read, and why:

* **Bands.** Each date becomes one GDAL virtual raster (VRT) on its 10 m grid (B02's size and
  georeferencing), with the bands of ``bands`` in that order (default :data:`BAND_ORDER`, all 13:
  B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B10, B11, B12; ``[B04, B03, B02]`` is RGB). The
  20 m and 60 m bands are resampled bilinearly by GDAL as they are read; no pixel is copied. Where a
  copy holds ``imgs_1_rect/`` (the release's own 10 m resampling, which TorchGeo reads) with all 13
  bands, those files are read instead.
* **Dates of different sizes.** In four cities (abudhabi, hongkong, saclay_e, saclay_w) the second
  date's 10 m grid is a few pixels smaller than the first's over the same ground footprint. The
  second date is then resampled bilinearly onto the first date's grid by a GDAL warped VRT
  (:func:`densechange.datasets.io.warp.warped_vrt`, the warp ``densechange predict`` applies on the
  fly), so training, ``check``, ``evaluate`` and ``predict`` all read the same pixels, and the labels,
  which have the first date's size, match. Refusing would lose 4 of the 24 cities, one of them a
  test city. Pixels outside the second date's footprint read as 0, Sentinel-2 L1C's no-data value,
  and are ignored; dates that are not georeferenced cannot be placed and are an error naming the city.
* **Labels.** ``<city>-cm.tif`` (train cities) stores 1 = no change and 2 = change (not the 0/1
  that the release's README.txt states) and is read through a VRT lookup table as 0/255; where it
  is missing (the test cities), ``cm.png`` is read. Both are decoded by the layout's ``threshold``
  rule, grey >= 128 is change: the train ``cm.png`` of aguasclaras is anti-aliased RGB, and
  thresholded it equals its ``-cm.tif`` exactly.
* **Splits.** ``train`` and ``test`` are the cities of ``train.txt`` / ``test.txt``; a copy without
  them (TorchGeo's test fixture) takes each split's cities from its label folder. There is no
  ``val``: set ``data.val_split=null`` or ``test``, and ``data.in_chans`` to the number of bands.

The VRTs reference the band files by absolute path and are written to the per-user cache
(``DENSECHANGE_CACHE``, default ``~/.cache/densechange``, under ``oscd/``), so the dataset folder
may be read-only; they are rewritten whenever their content would change, and a band selection has
its own files, so runs on different bands may share the cache.

Sources: rcdaudt.github.io/oscd; microsoft/torchgeo torchgeo/datasets/oscd.py (folders, ``_rect``, ``cm/cm.png``);
Bobholamovic/CDLab src/data/oscd.py (band names, comma-separated city lists, ``-cm.tif`` values 1 and 2).
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from densechange.atomic import write_atomically
from densechange.datasets.errors import DatasetError, format_names
from densechange.datasets.io.bandstack import BandSource, band_stack
from densechange.datasets.io.files import index_folder
from densechange.datasets.io.raster import open_raster
from densechange.datasets.io.sources import confine_to
from densechange.datasets.io.warp import needs_warp, warped_vrt

__all__ = ["BAND_ORDER", "IMAGES", "LABELS", "CACHE_ENV", "NODATA", "check_bands", "matches", "splits", "cities",
           "samples", "date_vrt", "label_file"]

BAND_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
"""Band order of the 13-band rasters (Sentinel-2's own order, B8A after B08)."""
IMAGES = "Onera Satellite Change Detection dataset - Images"
LABELS = {"train": "Onera Satellite Change Detection dataset - Train Labels",
          "test": "Onera Satellite Change Detection dataset - Test Labels"}
CACHE_ENV = "DENSECHANGE_CACHE"
NODATA = 0
"""Sentinel-2 L1C's no-data value: what a warped second date reads outside its footprint."""
_BAND = re.compile(r"(B0[1-9]|B1[0-2]|B8A)$", re.IGNORECASE)
_TIF_TO_GREY = "0:0,1:0,2:255"  # -cm.tif: 1 no change, 2 change -> 0/255, which the threshold rule reads


def check_bands(bands: Sequence[str] | None) -> tuple[str, ...]:
    """Band names (any letter case) as :data:`BAND_ORDER` spells them; None: all 13."""
    if bands is None:
        return BAND_ORDER
    if isinstance(bands, str):
        bands = [b for b in re.split(r"[,\s]+", bands) if b]
    names = tuple(str(b).upper() for b in bands)
    unknown = [b for b in names if b not in BAND_ORDER]
    if unknown or not names:
        raise DatasetError(f"data.bands={list(bands)}: {'unknown band ' + format_names(unknown) if unknown else 'empty'}; "
                           f"name Sentinel-2 bands of {', '.join(BAND_ORDER)}, e.g. [B04,B03,B02] for RGB.")
    if len(set(names)) != len(names):
        raise DatasetError(f"data.bands={list(bands)} names a band twice.")
    return names


def matches(base: Path) -> bool:
    """Whether ``base`` holds the OSCD images folder and a city list or a label folder."""
    return (base / IMAGES).is_dir() and bool(splits(base))


def splits(base: Path) -> list[str]:
    """The splits whose city list or label folder exists."""
    return sorted(s for s in LABELS if (base / IMAGES / f"{s}.txt").is_file() or (base / LABELS[s]).is_dir())


def cities(base: Path, split: str) -> list[str]:
    """The cities of ``split``: ``train.txt`` / ``test.txt`` (comma- or line-separated), else the label folder's cities."""
    if split not in LABELS:
        raise DatasetError(f"{base}: OSCD has the splits {sorted(LABELS)}, not {split!r}; set data.split (and "
                           "data.val_split=null or test) to one of those.")
    path = base / IMAGES / f"{split}.txt"
    if path.is_file():
        return [c.strip() for c in re.split(r"[,\n]", path.read_text(encoding="utf-8-sig")) if c.strip()]
    labels = base / LABELS[split]
    if not labels.is_dir():
        raise DatasetError(f"{path}: the city list of split {split!r} is missing, and so is {labels}.")
    return sorted(d.name for d in labels.iterdir() if d.is_dir() and not d.name.startswith("."))


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "densechange").expanduser() / "oscd"


def _cache_folder(folder: Path) -> Path:
    """Where the VRTs of the dataset folder ``folder`` are written; they may read the files of its city (``imgs_1``
    or ``imgs_1_rect``, say) and the other cached VRTs."""
    out = _cache_root() / hashlib.blake2b(str(folder.resolve()).encode(), digest_size=8).hexdigest()
    confine_to(folder.parent, vrts_in=out)
    confine_to(_cache_root(), vrts_in=out)
    return out


def _write(out: Path, document: str) -> Path:
    """``out`` holding ``document``, written (atomically) only when its content would change."""
    if not out.is_file() or out.read_text() != document:
        write_atomically(out, lambda tmp: tmp.write_text(document), suffix=".vrt")
    return out


def _band_files(folder: Path) -> dict[str, Path]:
    """The band files of one date folder, by band name (``B8A``), whatever their prefix."""
    found: dict[str, Path] = {}
    for stem, path in index_folder(folder).items() if folder.is_dir() else ():
        band = _BAND.search(stem)
        if band:
            found[band.group(1).upper()] = path
    return found


def _bands(city: Path, date: str) -> dict[str, Path]:
    """The 13 band files of one date: ``imgs_<d>_rect/`` when it holds them all, else ``imgs_<d>/``."""
    rect = _band_files(city / f"imgs_{date}_rect")
    if all(b in rect for b in BAND_ORDER):
        return rect
    folder = city / f"imgs_{date}"
    found = _band_files(folder)
    missing = [b for b in BAND_ORDER if b not in found]
    if missing:
        raise DatasetError(f"{folder}: no file for the bands {format_names(missing, 13)} (files ending in _B01 ... "
                           "_B12 and _B8A); OSCD needs all 13.")
    return found


def _document(files: dict[str, Path], bands: Sequence[str], label: str) -> str:
    """The VRT of ``bands`` on B02's grid; other resolutions are resampled bilinearly when read."""
    return band_stack(files["B02"], [BandSource(files[name], 1, f"{name} ({label})") for name in bands])


def _suffix(bands: Sequence[str]) -> str:
    """File-name suffix of a band selection (none for all 13 in order), so selections never overwrite each other."""
    return "" if tuple(bands) == BAND_ORDER else "_" + "-".join(bands)


def date_vrt(city: Path, date: str, bands: Sequence[str] = BAND_ORDER) -> Path:
    """The VRT of one date (``date`` ``1`` or ``2``) of the city folder ``city``, on its own 10 m grid."""
    document = _document(_bands(city, date), bands, f"{city.name} date {date}")
    return _write(_cache_folder(city / f"imgs_{date}") / f"{city.name}_imgs_{date}{_suffix(bands)}.vrt", document)


def _second_on_first(city: Path, first: Path, second: Path, bands: Sequence[str]) -> Path:
    """The second date's VRT, or where its grid differs from the first's, a warped VRT of it on the first date's grid."""
    with open_raster(first) as a, open_raster(second) as b:
        if not needs_warp(a, b, first, second, f"{city} (date 1 and date 2)"):
            return second
        document = warped_vrt(a, b, nodata=b.nodata if b.nodata is not None else NODATA)
    return _write(second.with_name(f"{city.name}_imgs_2_on_imgs_1{_suffix(bands)}.vrt"), document)


def label_file(base: Path, split: str, city: str) -> Path | None:
    """The label read for ``city``: ``<city>-cm.tif`` as 0/255 through a VRT lookup table, else ``cm.png``; None: neither."""
    folder = base / LABELS[split] / city / "cm"
    tif = folder / f"{city}-cm.tif"
    if tif.is_file():
        with open_raster(tif) as src:
            width, height = src.width, src.height
        root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
        element = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band="1")
        ET.SubElement(element, "Description").text = f"{tif.name}: 1 no change, 2 change, read as 0/255"
        source = ET.SubElement(element, "ComplexSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = tif.resolve().as_posix()
        ET.SubElement(source, "SourceBand").text = "1"
        ET.SubElement(source, "LUT").text = _TIF_TO_GREY
        ET.indent(root)
        return _write(_cache_folder(folder) / f"{city}-cm.vrt", ET.tostring(root, encoding="unicode") + "\n")
    png = folder / "cm.png"
    return png if png.is_file() else None


def samples(base: Path, split: str, skip_incomplete: bool = False, bands: Sequence[str] | None = None
            ) -> tuple[list[str], list[tuple[Path, ...]]]:
    """Cities of ``split`` and, for each, ``(VRT of date 1, date 2 on date 1's grid, label)`` (see the module docstring)."""
    bands = check_bands(bands)
    names, paths, lacking = [], [], []
    for city in cities(base, split):
        folder = base / IMAGES / city
        label = label_file(base, split, city)
        missing = [str(folder / f"imgs_{d}") for d in "12" if not (folder / f"imgs_{d}").is_dir()
                   and not (folder / f"imgs_{d}_rect").is_dir()]
        if label is None:
            missing.append(str(base / LABELS[split] / city / "cm" / "cm.png"))
        if missing:
            lacking.append(f"{city} (no {', '.join(missing)})")
            continue
        first, second = date_vrt(folder, "1", bands), date_vrt(folder, "2", bands)
        names.append(city)
        paths.append((first, _second_on_first(folder, first, second, bands), label))
    where = base / IMAGES / (split + ".txt")
    if lacking and not skip_incomplete:
        raise DatasetError(f"{where}: {len(lacking)} listed cities lack files: {format_names(lacking)}. Add them, or "
                           "set data.skip_incomplete=true to skip them.")
    if lacking:
        warnings.warn(f"{where}: skipping {len(lacking)} listed cities that lack files (data.skip_incomplete=true): "
                      f"{format_names(lacking)}", stacklevel=3)
    return names, paths
