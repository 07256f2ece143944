"""Pseudo-masks on disk: one folder per generation, a tiled GeoTIFF per window, read back by window.

A generation lives in ``RUN/pseudo_masks_g<N>/``. Masks are made window by window
(:mod:`densechange.pretrain.pseudo.windows`), and each window's mask is written at once as a
tiled, compressed uint8 GeoTIFF (``<image // 1000>/<image>_<top>_<left>.tif``, atomically, placed
on the map like its window of the image), so a process never holds more than one batch of masks,
whatever the scene size. One GeoTIFF cannot be written by several processes at once, and the
windows of one scene are shared among them, hence pieces; an image cut into several windows also
gets ``<image // 1000>/<image>.vrt`` (:func:`write_scene_vrt`), its whole mask as one raster for
GDAL or a GIS. When a process has
written its share it writes ``rank<R>.json``: its pieces, their sha256, the images' names and
sizes and the generation's metadata. Nothing is gathered between processes.

:class:`MaskStore` keeps only that index in memory and reads a window of any image's mask from the
pieces under it (one, or up to four at the corners of a piece), so training reads only its crop,
and a generation can be reopened by a resumed run with any number of processes.

All processes must see the same run folder: on several nodes, ``run.dir`` must be on a shared
filesystem (the store says so when pieces written by another node are missing).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from densechange.atomic import write_atomically
from densechange.datasets.errors import DatasetError
from densechange.datasets.io.raster import Georef

__all__ = ["KIND", "OUTSIDE", "MaskWriter", "MaskStore", "clear_folder", "write_scene_vrt"]

KIND = "pseudo-masks"
OUTSIDE = 255  # mask value past an image's edge; cluster ids are 0..254
BLOCK = 256  # GeoTIFF tile side of a piece


def clear_folder(folder: Path) -> None:
    """Remove a generation folder (a stale or partial one) and create it empty; call on one process."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_piece(path: Path, mask: np.ndarray, georef: Georef) -> None:
    """A uint8 ``(h, w)`` mask as a deflate GeoTIFF, tiled when it is large enough to be read by window."""
    profile = dict(driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1, dtype="uint8",
                   compress="deflate", zlevel=1, nodata=OUTSIDE)
    if georef.georeferenced:  # the piece lies where its window of the image lies
        profile.update(crs=georef.crs, transform=georef.affine)
    if mask.shape[0] >= BLOCK and mask.shape[1] >= BLOCK:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # pieces carry pixel positions, not map positions
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(mask, 1)


class MaskWriter:
    """Writes the window masks of one process into ``folder``, each at once, then the process's index.

    Args:
        folder: the generation folder (it must exist).
        rank: the writing process; it names the index file.
        meta: metadata of the generation (generation, epoch, fitting pixels, tile...).
    """

    def __init__(self, folder: Path, rank: int, meta: dict) -> None:
        self.folder, self.rank, self.meta = Path(folder), int(rank), dict(meta)
        self.pieces: list[list] = []
        self.images: dict[int, tuple[str, int, int]] = {}

    def add(self, index: int, name: str, size: tuple[int, int], top: int, left: int, mask: np.ndarray,
            georef: Georef | None = None) -> None:
        """Write the mask of the window at ``(top, left)`` of image ``index`` (whose size is ``size``).

        ``georef`` is the image's; the piece gets that of its window.
        """
        rel = f"{int(index) // 1000:04d}/{int(index):07d}_{int(top)}_{int(left)}.tif"
        out = self.folder / rel
        digest: list[str] = []

        def write(tmp: Path) -> None:
            _write_piece(tmp, np.ascontiguousarray(mask, dtype=np.uint8), (georef or Georef()).for_window(top, left))
            digest.append(_sha256(tmp))

        write_atomically(out, write, suffix=".tif")
        self.pieces.append([int(index), int(top), int(left), int(mask.shape[0]), int(mask.shape[1]), rel, digest[0]])
        self.images[int(index)] = (name, int(size[0]), int(size[1]))

    def flush(self) -> None:
        """Write this process's index (``rank<R>.json``): the generation is readable once every process has."""
        doc = {"kind": KIND, **self.meta, "images": {str(i): list(v) for i, v in sorted(self.images.items())},
               "pieces": self.pieces}
        write_atomically(self.folder / f"rank{self.rank:05d}.json", lambda tmp: tmp.write_text(json.dumps(doc)))


class MaskStore(Sequence[np.ndarray]):
    """The masks of one generation: ``store.read_window(i, ...)`` reads a window, ``store[i]`` a whole mask.

    Args:
        folder: the generation folder.
        names: the dataset's image names; the stored masks must be for exactly these images.
    Raises:
        DatasetError: the folder is missing, incomplete, or holds masks of other images.
    """

    def __init__(self, folder: str | Path, names: Sequence[str]) -> None:
        self.folder = Path(folder)
        indexes = sorted(self.folder.glob("rank*.json")) if self.folder.is_dir() else []
        self.meta: dict = {}
        self.sizes = np.full((len(names), 2), -1, np.int64)
        self.pieces: dict[tuple[int, int, int], tuple[str, str, int, int]] = {}
        for f in indexes:
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError) as err:
                raise DatasetError(f"{f}: not a pseudo-mask index ({err}); start a new run.dir.") from err
            if doc.get("kind") != KIND:
                raise DatasetError(f"{f} is a '{doc.get('kind')}' file, not a pseudo-mask index.")
            for key, (name, h, w) in doc["images"].items():
                i = int(key)
                if not 0 <= i < len(names) or names[i] != name:
                    raise DatasetError(f"{f} holds pseudo-masks of other images than this dataset's; resume with the same "
                                       "data, or start a new run.dir.")
                self.sizes[i] = (h, w)
            for i, top, left, h, w, rel, digest in doc["pieces"]:
                self.pieces[(i, top, left)] = (rel, digest, h, w)
            self.meta = {k: v for k, v in doc.items() if k not in ("images", "pieces")}
        self.names = list(names)
        self.tile = int(self.meta.get("tile", 0))
        covered = (self.sizes[:, 0] >= 0).astype(np.int64)
        if covered.all() and self.tile:
            expected = (-(-self.sizes[:, 0] // self.tile) * -(-self.sizes[:, 1] // self.tile)).sum()
            complete = len(self.pieces) == int(expected)
        else:
            complete = False
        if not complete:
            missing = len(names) - int(covered.sum())
            raise DatasetError(f"{self.folder} holds pseudo-masks of {len(names) - missing} of {len(names)} images"
                               f"{'' if missing else ', some only in part'}. On several nodes, run.dir must be on a "
                               "filesystem that every node sees.")

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation", -1))

    def __len__(self) -> int:
        return int(self.sizes.shape[0])

    def size_of(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of mask ``index``."""
        return int(self.sizes[index, 0]), int(self.sizes[index, 1])

    def read_window(self, index: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """``(height, width)`` uint8 window of mask ``index`` (:data:`OUTSIDE` past its edge); only its pieces are read."""
        out = np.full((height, width), OUTSIDE, np.uint8)
        h, w = self.size_of(index)
        r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + height, h), min(left + width, w)
        t = self.tile
        for ptop in range(r0 // t * t, r1, t):
            for pleft in range(c0 // t * t, c1, t):
                rel, _, ph, pw = self.pieces[(int(index), ptop, pleft)]
                y0, x0 = max(r0, ptop), max(c0, pleft)
                y1, x1 = min(r1, ptop + ph), min(c1, pleft + pw)
                path = self.folder / rel
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", NotGeoreferencedWarning)
                        with rasterio.open(path) as src:
                            part = src.read(1, window=Window(x0 - pleft, y0 - ptop, x1 - x0, y1 - y0))
                except RasterioError as err:
                    raise DatasetError(f"{path}: cannot read this pseudo-mask ({err}); start a new run.dir.") from err
                out[y0 - top : y1 - top, x0 - left : x1 - left] = part
        return out

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        """The whole ``(H, W)`` uint8 mask of image ``index``."""
        h, w = self.size_of(index)
        return self.read_window(index, 0, 0, h, w)

    def pieces_of(self, index: int) -> list[tuple[int, int, str, int, int]]:
        """``(top, left, file, height, width)`` of every piece of mask ``index``, row by row."""
        h, w = self.size_of(index)
        return [(t, l_, *self.pieces[(int(index), t, l_)][::2], self.pieces[(int(index), t, l_)][3])
                for t in range(0, h, self.tile) for l_ in range(0, w, self.tile)]

    def verify(self) -> None:
        """Check every piece against the digest stored when it was written (streamed, a MiB at a time)."""
        for rel, digest, _, _ in self.pieces.values():
            path = self.folder / rel
            if not path.is_file() or _sha256(path) != digest:
                raise DatasetError(f"{path}: missing or changed since it was written (sha256); the generation is remade.")


def write_scene_vrt(store: MaskStore, index: int, georef: Georef | None = None) -> Path:
    """One VRT for the mask of image ``index`` over its pieces: a GIS or GDAL reads it as one raster, by window.

    Written beside the pieces (``<image // 1000>/<image>.vrt``), placed on the map like the image.
    """
    h, w = store.size_of(index)
    root = ET.Element("VRTDataset", rasterXSize=str(w), rasterYSize=str(h))
    if georef is not None and georef.georeferenced:
        a = georef.affine
        ET.SubElement(root, "SRS").text = georef.crs
        ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in (a.c, a.a, a.b, a.f, a.d, a.e))
    band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band="1")
    ET.SubElement(band, "NoDataValue").text = str(OUTSIDE)
    ET.SubElement(band, "Description").text = f"pseudo-mask of {store.names[index]}"
    for top, left, rel, ph, pw in store.pieces_of(index):
        source = ET.SubElement(band, "SimpleSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = Path(rel).name
        ET.SubElement(source, "SourceBand").text = "1"
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=str(pw), ySize=str(ph))
        ET.SubElement(source, "DstRect", xOff=str(left), yOff=str(top), xSize=str(pw), ySize=str(ph))
    ET.indent(root)
    out = store.folder / f"{index // 1000:04d}" / f"{index:07d}.vrt"
    document = ET.tostring(root, encoding="unicode") + "\n"
    write_atomically(out, lambda tmp: tmp.write_text(document), suffix=".vrt")
    return out
