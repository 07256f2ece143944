"""``densechange tile SRC DST size=512``: cut any dataset the toolkit reads into tiles, in its classic layout.

Formats that cannot be read by window (PNG, JPEG, single-strip TIFF) make every training crop decode
the whole file, and whole scenes (WHU-CD) make evaluation hold a scene at a time. Tiling once fixes
both. The source is found as training finds it (:func:`densechange.datasets.readers.locate.find_layout`,
the layouts of :mod:`densechange.datasets.readers.layouts`, or one that ``data.layout.*`` describes),
and every date, image, label and mask is cut on the same grid into ``size x size`` tiles (the last
row and column flush with the image's edge, so nothing is lost or padded), written as tiled GeoTIFF
(default) or PNG with each tile's own georeferencing.

The output is the toolkit's classic layout, which trains with no ``data.layout`` override:

- change: ``DST/<split>/{A,B,label}/`` for each split folder (or ``{split}`` in the folder paths,
  or reader split: OSCD's cities), ``DST/{A,B,label}/`` + ``DST/list/<split>.txt`` for a dataset
  whose role folders sit in its own folder (its list files rewritten with the tiles of each listed
  sample, so no tile changes split);
- image–mask: the same with ``image/`` and ``mask/`` (a dataset already in the classic ``A/`` +
  ``label/`` or ``image/`` + ``mask/`` layout keeps its folder names); group folders (LoveDA's
  ``Urban/``, OpenEarthMap's regions) are merged, their sample names being unique.

Images keep their bands, band order, dtype, no-data value and mask band. Labels are decoded as
training decodes them (:meth:`~densechange.datasets.readers.change.ChangeDataset.decode_label`:
S2Looking's and CDD's grey threshold, SECOND's "not white", 0/255 or 0/1; and
:meth:`~densechange.datasets.readers.image_mask.ImageMaskDataset.decode_mask`: LoveDA's and
OpenEarthMap's 0 = no-data, class ``k`` stored as ``k + 1``) and written as the toolkit's values:
0/1 for change, class ids ``0..K-1`` for masks (uint8, or uint16 past 255 classes). Ignored pixels
(a source no-data label, ``data.ignore_value``) are stored as the dtype's maximum (255) and marked
invalid in the tile's mask band, which the readers ignore; PNG has no mask band, so a PNG tile that
would hold ignored pixels is an error that asks for ``format=tif``.

A tile is named ``<sample>_<top>_<left>`` (pixel offsets). Memory is one tile per file (a
whole-file format is decoded once per file), whatever the image size, and the output folder
appears only when every tile is written (:func:`densechange.atomic.atomic_folder`).

Example:
    >>> tile_dataset("S2Looking", "s2looking_256", TileSpec(size=256))   # -> train/, val/, test/ each with A/, B/, label/
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from tqdm import tqdm

from densechange.atomic import atomic_folder
from densechange.datasets.errors import DatasetError
from densechange.datasets.io.images import IGNORE_INDEX
from densechange.datasets.io.labels import blank_invalid
from densechange.datasets.io.raster import Georef, RasterWindows
from densechange.datasets.readers.change import ChangeDataset
from densechange.datasets.readers.crops import scan_sizes
from densechange.datasets.readers.image_mask import ImageMaskDataset
from densechange.datasets.readers.layouts import Layout
from densechange.datasets.readers.options import ChangeOptions, ImageMaskOptions
from densechange.datasets.readers.locate import find_layout, holds_folders, list_files, locate, split_folders

__all__ = ["tile_starts", "tile_dataset", "TileSpec", "TileReport", "CLASSIC_FOLDERS"]

FORMATS = ("tif", "png")
CLASSIC_FOLDERS = {"change": ("A", "B", "label"), "image-mask": ("image", "mask")}
"""The folders of the output, by kind; the classic layouts below keep their own."""
CLASSIC_LAYOUTS = ("levir-cd", "sadl", "image-mask")

Decoder = Callable[[np.ndarray, Path, "np.ndarray | None"], np.ndarray]


def tile_starts(length: int, size: int, overlap: int = 0) -> list[int]:
    """Tile starts along one side: every ``size - overlap`` pixels, the last flush with the end."""
    if length <= size:
        return [0]
    step = size - overlap
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


@dataclass(frozen=True)
class TileSpec:
    """The tiles to cut: their side, the overlap of neighbours and the file format (``tif`` or ``png``)."""

    size: int = 512
    overlap: int = 0
    fmt: str = "tif"

    def __post_init__(self) -> None:
        if self.size < 16 or not 0 <= self.overlap < self.size:
            raise DatasetError(f"size={self.size} overlap={self.overlap}: need size >= 16 and 0 <= overlap < size.")
        if self.fmt not in FORMATS:
            raise DatasetError(f"format={self.fmt}: expected one of {FORMATS}.")


@dataclass
class TileReport:
    """What :func:`tile_dataset` did: the layout it read, and samples, files and tiles per output folder."""

    samples: int = 0
    tiles: int = 0
    files: int = 0
    layout: str = ""
    parts: dict[str, int] = field(default_factory=dict)  # tiles per output folder ("." for DST itself)


@dataclass(frozen=True)
class _Unit:
    """One part of the source: a split (None: every complete sample of the dataset folder), where its tiles go,
    and the list files to rewrite."""

    split: str | None
    out: str
    lists: tuple[str, ...] = ()


def _units(base: Path, layout: Layout) -> list[_Unit]:
    """The dataset folder itself (when it holds the role folders), then every split folder.

    A split with its own folder is read from that folder, as the readers do, so a list file of the
    same split is not rewritten for the dataset folder's tiles.
    """
    splits = split_folders(base, layout)
    own = {split.lower() for split in splits}
    lists = tuple(split for split in list_files(base, layout) if split.lower() not in own)
    flat = [] if layout.reader or not holds_folders(base, layout) else [_Unit(None, ".", lists)]
    return flat + [_Unit(split, split.lower()) for split in splits]


def _write(path: Path, arr: np.ndarray, georef: Georef, fmt: str, valid: np.ndarray | None) -> None:
    """One tile ``(h, w, C)``: a tiled, compressed GeoTIFF with its georeferencing (and mask band), or a PNG."""
    if fmt == "png":
        if arr.dtype not in (np.uint8, np.uint16) or arr.shape[2] not in (1, 3, 4) or (
                arr.dtype == np.uint16 and arr.shape[2] != 1):
            raise DatasetError(f"{path}: PNG holds 8-bit images of 1, 3 or 4 bands (or one 16-bit band), not "
                               f"{arr.shape[2]} bands of {arr.dtype}; use format=tif.")
        if valid is not None and not valid.all():
            raise DatasetError(f"{path}: the tile holds no-data or ignored pixels, which PNG cannot mark; use format=tif.")
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
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
            dst.write(np.moveaxis(arr, -1, 0))
            if valid is not None and georef.nodata is None:  # a mask band: the no-data value says it otherwise
                dst.write_mask(valid.astype(np.uint8) * np.uint8(255))


def _label_dtype(dataset: ChangeDataset | ImageMaskDataset) -> np.dtype:
    """uint8 for change labels and up to 255 classes (255 marks ignored pixels), else uint16."""
    classes = dataset.num_classes
    if classes >= 2**16 - 1:
        raise DatasetError(f"{dataset.root}: {classes} classes do not fit a uint16 label with a value left for "
                           "ignored pixels.")
    return np.dtype(np.uint8 if classes < 255 else np.uint16)


def _label_tile(ids: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray | None]:
    """Decoded ids ``(h, w)`` -> the stored tile ``(h, w, 1)`` (ignored: the dtype's maximum) and its validity."""
    ignored = ids == IGNORE_INDEX
    stored = np.where(ignored, np.iinfo(dtype).max, ids).astype(dtype)[..., None]
    return stored, ~ignored if ignored.any() else None


def _tile_sample(name: str, paths: Sequence[Path], decode: Decoder, out_dirs: Sequence[Path], label_dtype: np.dtype,
                 spec: TileSpec) -> list[str]:
    """Cut one sample (images, then its label) on one grid; returns the tile names."""
    size, overlap, fmt = spec.size, spec.overlap, spec.fmt
    with contextlib.ExitStack() as stack:
        images = [stack.enter_context(RasterWindows(p)) for p in paths[:-1]]
        label = stack.enter_context(RasterWindows(paths[-1], expand_palette=False, use_nodata=False))
        info = images[0].info
        label_georef = replace(label.info.georef if label.info.georef.georeferenced else info.georef, nodata=None)
        tiles = []
        for y in tile_starts(info.height, size, overlap):
            for x in tile_starts(info.width, size, overlap):
                h, w = min(size, info.height - y), min(size, info.width - x)
                tile = f"{name}_{y:05d}_{x:05d}"
                for image, folder in zip(images, out_dirs):
                    arr, valid = image.read(y, x, h, w)
                    _write(folder / f"{tile}.{fmt}", np.ascontiguousarray(arr), image.info.georef.for_window(y, x), fmt,
                           valid)
                stored, valid = label.read(y, x, h, w)
                ids = decode(blank_invalid(np.array(stored), valid), paths[-1], valid)
                stored, valid = _label_tile(ids, label_dtype)
                _write(out_dirs[-1] / f"{tile}.{fmt}", stored, label_georef.for_window(y, x), fmt, valid)
                tiles.append(tile)
        return tiles


def _reader(src: Path, layout: Layout, split: str | None, ignore_value: int | None,
            skip_incomplete: bool) -> ChangeDataset | ImageMaskDataset:
    """The dataset training would read for ``split``: its samples and its label decoding."""
    if layout.kind == "change":
        return ChangeDataset(src, split, ChangeOptions(ignore_value=ignore_value, skip_incomplete=skip_incomplete),
                             layout=layout)
    return ImageMaskDataset(src, split, ImageMaskOptions(ignore_value=ignore_value, skip_incomplete=skip_incomplete),
                            layout=layout)


def tile_dataset(src: str | Path, dst: str | Path, spec: TileSpec = TileSpec(), *, kind: str = "auto",
                 layout: Layout | None = None, ignore_value: int | None = None, skip_incomplete: bool = False,
                 progress: bool = False) -> TileReport:
    """Cut every sample of the dataset at ``src`` into tiles under ``dst`` (see the module docstring).

    Args:
        spec: the tiles' side, overlap and format.
        kind: ``change``, ``image-mask`` or ``auto`` (change layouts first), when ``layout`` is None.
        layout: the layout to read (default: the known layout found at ``src``).
        ignore_value: stored label value of pixels to ignore (they become ignored pixels of the tiles).
        skip_incomplete: skip samples that lack a file, with a warning (default: an error naming them).
        progress: show a progress bar over the samples.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DatasetError(f"{src}: dataset folder not found.")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DatasetError(f"{dst}: the output folder exists and is not empty; choose a new folder.")
    found = find_layout(src, kind, layout)
    if found is None:
        raise DatasetError(f"{src}: no dataset layout found; `densechange check {src}` says what it expected, and "
                           "data.layout.KEY=VALUE describes another tree.")
    layout, base = found
    folders = layout.folders if layout.name in CLASSIC_LAYOUTS else CLASSIC_FOLDERS[layout.kind]
    report = TileReport(layout=layout.name)
    units = [(unit, _reader(src, layout, unit.split, ignore_value, skip_incomplete)) for unit in _units(base, layout)]
    total = sum(len(dataset.names) for _, dataset in units)
    with atomic_folder(dst) as out, tqdm(total=total, unit="sample", desc="tile", disable=not progress) as bar:
        for unit, dataset in units:
            samples = dataset.paths if isinstance(dataset, ChangeDataset) else list(zip(dataset.image_paths,
                                                                                        dataset.mask_paths))
            decode = dataset.decode_label if isinstance(dataset, ChangeDataset) else dataset.decode_mask
            scan_sizes(samples)  # every file of a sample on one grid, checked before anything is written
            out_dirs = [out / unit.out / f for f in folders]
            for folder in out_dirs:
                folder.mkdir(parents=True)
            label_dtype = _label_dtype(dataset)
            tiles_of: dict[str, list[str]] = {}
            for name, paths in zip(dataset.names, samples):
                tiles_of[name] = _tile_sample(name, paths, decode, out_dirs, label_dtype, spec)
                report.samples += 1
                report.files += len(paths)
                report.tiles += len(tiles_of[name])
                report.parts[unit.out] = report.parts.get(unit.out, 0) + len(tiles_of[name])
                bar.update()
            for split in unit.lists:
                listed = locate(src, layout.kind, split, layout=layout, skip_incomplete=skip_incomplete).names
                (out / "list").mkdir(exist_ok=True)
                (out / "list" / f"{split}.txt").write_text("".join(f"{t}\n" for n in listed for t in tiles_of[n]))
    return report
