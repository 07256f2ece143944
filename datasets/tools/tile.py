"""``densechange tile SRC DST --size 512``: cut a dataset's rasters into tiles, splits and places kept.

Formats that cannot be read by window (PNG, JPEG, single-strip TIFF) make every training crop decode
the whole file. Tiling once fixes that: every image, mask, date and label of an image–mask or change
dataset is cut on the same grid into ``size x size`` tiles (the last row and column flush with the
image's edge, so nothing is lost or padded), written as tiled GeoTIFF (default) or PNG with each
tile's own georeferencing. ``list/<split>.txt`` files are rewritten with the tiles of each listed
sample, so no tile changes split. A tile is named ``<sample>_<top>_<left>`` (pixel offsets).

Example:
    >>> tile_dataset("levir_1024", "levir_256", size=256)      # change dataset: A/, B/, label/, list/
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from densechange.datasets.readers.change import CHANGE_FOLDERS
from densechange.datasets.readers.crops import scan_sizes
from densechange.datasets.errors import DatasetError
from densechange.datasets.io.files import index_folder, list_splits, read_list, select_names
from densechange.datasets.readers.image_mask import IMAGE_MASK_LAYOUTS
from densechange.datasets.io.raster import PILLOW_SUFFIXES, Georef, open_raster, raster_info, read_raster, read_window

__all__ = ["tile_starts", "tile_dataset", "TileReport"]

FORMATS = ("tif", "png")


def tile_starts(length: int, size: int, overlap: int = 0) -> list[int]:
    """Tile starts along one side: every ``size - overlap`` pixels, the last flush with the end."""
    if length <= size:
        return [0]
    step = size - overlap
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


@dataclass
class TileReport:
    samples: int = 0
    tiles: int = 0
    files: int = 0


def _groups(src: Path) -> list[tuple[Path, list[str], bool]]:
    """``(folder, sub-folders, has lists)`` of every part of the dataset to tile."""
    groups = []
    if all((src / s).is_dir() for s in CHANGE_FOLDERS):
        groups.append((src, list(CHANGE_FOLDERS), True))
    for split in sorted(d for d in src.iterdir() if d.is_dir() and all((d / s).is_dir() for s in CHANGE_FOLDERS)):
        groups.append((split, list(CHANGE_FOLDERS), False))
    if groups:
        return groups
    for images, masks in IMAGE_MASK_LAYOUTS:
        if (src / images).is_dir() and (src / masks).is_dir():
            return [(src, [images, masks], True)]
    if not groups:
        raise DatasetError(f"{src}: no dataset layout found; expected A/ + label/, image/ + mask/, A/ + B/ + label/ "
                           "or <split>/{A,B,label}/.")
    return groups


def _write(path: Path, arr: np.ndarray, georef: Georef, fmt: str) -> None:
    """One tile ``(h, w, C)``: a tiled, compressed GeoTIFF with its georeferencing, or a PNG."""
    if fmt == "png":
        if arr.dtype not in (np.uint8, np.uint16) or arr.shape[2] not in (1, 3, 4) or (
                arr.dtype == np.uint16 and arr.shape[2] != 1):
            raise DatasetError(f"{path}: PNG holds 8-bit images of 1, 3 or 4 bands (or one 16-bit band), not "
                               f"{arr.shape[2]} bands of {arr.dtype}; use --format tif.")
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(path)
        return
    h, w, c = arr.shape
    profile = dict(driver="GTiff", height=h, width=w, count=c, dtype=arr.dtype.name, compress="deflate")
    if h >= 256 and w >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if georef.georeferenced:
        profile.update(crs=georef.crs, transform=georef.affine)
    if georef.nodata is not None:
        profile["nodata"] = georef.nodata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.moveaxis(arr, -1, 0))


def _tile_file(path: Path, out_dir: Path, name: str, size: int, overlap: int, fmt: str, mask: bool) -> list[str]:
    """Cut one raster; returns the tile names. Whole-file formats are decoded once, others read by window."""
    info = raster_info(path)
    ys, xs = tile_starts(info.height, size, overlap), tile_starts(info.width, size, overlap)
    whole = read_raster(path, expand_palette=not mask)[0] if path.suffix.lower() in PILLOW_SUFFIXES else None
    names = []
    with open_raster(path) as src:
        for y in ys:
            for x in xs:
                h, w = min(size, info.height - y), min(size, info.width - x)
                if whole is not None:
                    arr = whole[y : y + h, x : x + w]
                else:
                    arr = read_window(src, y, x, h, w, expand_palette=not mask, path=path)[0]
                tile = f"{name}_{y:05d}_{x:05d}"
                _write(out_dir / f"{tile}.{fmt}", np.ascontiguousarray(arr), info.georef.for_window(y, x), fmt)
                names.append(tile)
    return names


def tile_dataset(src: str | Path, dst: str | Path, *, size: int = 512, overlap: int = 0, fmt: str = "tif") -> TileReport:
    """Cut every raster of the dataset at ``src`` into tiles under ``dst`` (same layout; see the module docstring)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DatasetError(f"{src}: dataset folder not found.")
    if size < 16 or not 0 <= overlap < size:
        raise DatasetError(f"--size {size} --overlap {overlap}: need size >= 16 and 0 <= overlap < size.")
    if fmt not in FORMATS:
        raise DatasetError(f"--format {fmt}: expected one of {FORMATS}.")
    if dst.exists() and any(dst.iterdir()):
        raise DatasetError(f"{dst}: the output folder exists and is not empty; choose a new folder.")
    report = TileReport()
    for folder, subs, has_lists in _groups(src):
        folders = [folder / s for s in subs]
        indexes = [index_folder(f) for f in folders]
        names = select_names(src, None, indexes, folders)
        scan_sizes([[ix[n] for ix in indexes] for n in names])  # every file of a sample on one grid, checked up front
        out_root = dst / folder.relative_to(src)
        tiles_of: dict[str, list[str]] = {}
        for name in names:
            for sub, ix in zip(subs, indexes):
                out_dir = out_root / sub
                out_dir.mkdir(parents=True, exist_ok=True)
                tiles_of[name] = _tile_file(ix[name], out_dir, name, size, overlap, fmt, mask=sub in ("label", "mask"))
                report.files += 1
            report.samples += 1
            report.tiles += len(tiles_of[name])
        if has_lists:
            for split in list_splits(src):
                listed = read_list(src / "list" / f"{split}.txt")
                lacking = [n for n in listed if n not in tiles_of]
                if lacking:
                    raise DatasetError(f"{src / 'list' / f'{split}.txt'} names samples without files: {lacking[:5]}.")
                (dst / "list").mkdir(parents=True, exist_ok=True)
                (dst / "list" / f"{split}.txt").write_text("".join(f"{t}\n" for n in listed for t in tiles_of[n]))
    return report
