"""The bands of a split scene: where each band's part files go, and their joining into the scene's outputs.

A band's rows are written as GeoTIFF parts (with the band's own georeferencing) under
``.densechange-parts/<change map>/`` in the output folder, each atomically. The process that
writes a scene's last part joins them, with no collective: it takes an ``O_EXCL`` lock file,
checks again that every part is there, writes a GDAL VRT over the parts and copies it to each
output in its format (:func:`~densechange.finetune.inference.streaming.publish_copy`, under a
temporary name renamed when whole), then removes the parts, then the lock. A second process that
also saw every part finds the lock taken, or (once the lock is gone) the parts gone.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import rasterio

from densechange.atomic import scratch_path

from densechange.finetune.inference.streaming import SceneOutputs, publish_copy

PARTS = ".densechange-parts"
LOCK = "join.lock"
KEYS = ("change", "distance", "probability")


@dataclass(frozen=True)
class Band:
    """Block rows ``[first, last)`` of a scene, its pixel rows ``[top, bottom)``; it runs the rows from ``lead``
    (the block rows above whose windows reach into it, see :meth:`Scene.band
    <densechange.finetune.inference.scene.Scene.band>`)."""

    first: int
    last: int
    top: int
    bottom: int
    lead: int


def parts_folder(folder: Path, key: str) -> Path:
    """Where the parts of the scene whose change map is ``key`` (relative to the output folder) go."""
    return Path(folder) / PARTS / key


def part_outputs(folder: Path, key: str, outputs: SceneOutputs, band: Band) -> SceneOutputs:
    """The part files of one band: one GeoTIFF for each output the scene has."""
    base = parts_folder(folder, key)
    name = f"rows{band.top:08d}-{band.bottom:08d}"
    return SceneOutputs(*(base / f"{name}.{k}.tif" if getattr(outputs, k) is not None else None for k in KEYS))


def all_written(folder: Path, key: str, outputs: SceneOutputs, bands: list[Band]) -> bool:
    return all(p.exists() for band in bands for p in _paths(part_outputs(folder, key, outputs, band)))


def _paths(outputs: SceneOutputs) -> list[Path]:
    return [getattr(outputs, k) for k in KEYS if getattr(outputs, k) is not None]


@contextlib.contextmanager
def join_lock(folder: Path, key: str) -> Iterator[bool]:
    """Whether this process holds the scene's join lock (an ``O_EXCL`` file); it is removed when the block ends."""
    lock = parts_folder(folder, key) / LOCK
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        yield False
        return
    try:
        os.write(fd, f"{os.uname().nodename} {os.getpid()}\n".encode())
        os.close(fd)
        yield True
    finally:
        lock.unlink(missing_ok=True)


def join(folder: Path, key: str, outputs: SceneOutputs, bands: list[Band], joined: Callable[[], None]) -> bool:
    """Join the scene's parts into its outputs if they are all written and no other process is at it.

    Returns whether this process joined them. ``joined`` is called once every output is whole (to
    record them), before the parts are removed: a process killed in between leaves parts to join
    again, never a scene with neither parts nor a record.
    """
    if not all_written(folder, key, outputs, bands):
        return False
    with join_lock(folder, key) as held:
        if not held or not all_written(folder, key, outputs, bands):  # another process joined them meanwhile
            return False
        for k in KEYS:
            final = getattr(outputs, k)
            if final is None:
                continue
            parts = [getattr(part_outputs(folder, key, outputs, band), k) for band in bands]
            with scratch_path(parts_folder(folder, key) / f"{k}.vrt", suffix=".vrt") as vrt:
                vrt.write_text(mosaic_vrt(parts))  # a scratch file of its own name, removed after the copy
                publish_copy(vrt, final, outputs.cog)
        joined()
        for band in bands:
            for path in _paths(part_outputs(folder, key, outputs, band)):
                path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        parts_folder(folder, key).rmdir()  # empty now, unless another band plan left files
    return True


def clear(folder: Path, key: str, keep: list[Path]) -> None:
    """Remove the scene's part folder but the files in ``keep``: stale parts, temporaries and a dead process's lock.

    Only called while no process is predicting into the folder (when a run plans).
    """
    base = parts_folder(folder, key)
    if not base.is_dir():
        return
    kept = {p.resolve() for p in keep}
    for path in base.iterdir():
        if path.resolve() not in kept:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def mosaic_vrt(parts: list[Path]) -> str:
    """The GDAL VRT XML of one-band rasters stacked top to bottom (the bands of a scene, in order)."""
    sources = []
    for part in parts:
        with rasterio.open(part) as src:
            sources.append((part, src.height, src.width, src.crs, src.transform, src.nodata, src.block_shapes[0]))
    _, _, width, crs, transform, nodata, _ = sources[0]
    height = sum(s[1] for s in sources)
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    if crs is not None:
        ET.SubElement(root, "SRS").text = crs.to_wkt()
        ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in transform.to_gdal())
    band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band="1")
    if nodata is not None:
        ET.SubElement(band, "NoDataValue").text = repr(nodata)
    top = 0
    for part, h, w, _, _, _, (block_h, block_w) in sources:
        source = ET.SubElement(band, "SimpleSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = str(Path(part).resolve())
        ET.SubElement(source, "SourceBand").text = "1"
        ET.SubElement(source, "SourceProperties", RasterXSize=str(w), RasterYSize=str(h), DataType="Byte",
                      BlockXSize=str(block_w), BlockYSize=str(block_h))
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
        ET.SubElement(source, "DstRect", xOff="0", yOff=str(top), xSize=str(w), ySize=str(h))
        top += h
    return ET.tostring(root, encoding="unicode")
