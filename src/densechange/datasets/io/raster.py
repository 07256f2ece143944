"""Rasters on GDAL (through rasterio): open, describe, read a window, write block by block.

Everything GDAL reads is an image to the toolkit: GeoTIFF and COG with any compression, BigTIFF,
JPEG 2000, ENVI, ERDAS IMG, VRT, BMP, PNG, JPEG, WebP and more. Reads keep the file's dtype and
come as ``(H, W, C)``. A window read decodes only the blocks under the window (tiled or striped
TIFF and COG), which is what lets training cut 256² crops from 20,000² scenes and prediction
stream a scene of any size.

Georeferencing is data (:class:`Georef`): the CRS, the affine transform and the no-data value
travel from the raster that was read to every raster written from it. Pixels that a raster marks
as no-data (its no-data value or its mask band) come back as ``valid = False``.

Example:
    >>> info = raster_info("scene.tif")                      # size, bands, dtype, tiling, georef
    >>> with open_raster("scene.tif") as src:
    ...     crop, valid = read_window(src, WindowRequest(top=512, left=1024, height=256, width=256))
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import rasterio
from PIL import Image, UnidentifiedImageError
from rasterio.enums import ColorInterp, Interleaving, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from densechange.datasets.errors import DatasetError
from densechange.datasets.io.limits import GDAL_CACHE_ENV, IMAGE_PIXELS_ENV, check_pixels, check_strip, pillow_bound, read_limits
from densechange.datasets.io.remote import RasterRef
from densechange.datasets.io.remote import gdal_reason as _first_line
from densechange.datasets.io.sources import GDAL_READ_OPTIONS, NETWORK_DRIVERS, SourcePolicy, check_sources, is_vrt

# Opening a raster must not list its folder: with a million tiles in one folder that listing makes
# every open slow and a whole epoch quadratic. GDAL then probes sidecars (.hdr, .aux.xml, world
# files) one by one, which is all that is needed.
os.environ.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "TRUE")
# GDAL's advice for files from strangers (https://gdal.org/user/security.html): drivers whose files
# describe a remote service are not registered, so no file can make GDAL reach one; the block cache
# is bounded (GDAL's default is a share of the RAM). Both take effect when GDAL registers its drivers,
# which is after this module is imported.
os.environ["GDAL_SKIP"] = " ".join(dict.fromkeys([*os.environ.get("GDAL_SKIP", "").split(), *NETWORK_DRIVERS]))
if GDAL_CACHE_ENV in os.environ or "GDAL_CACHEMAX" not in os.environ:
    os.environ["GDAL_CACHEMAX"] = str(read_limits().gdal_cache_mb)

__all__ = ["Georef", "RasterInfo", "open_raster", "raster_info", "WindowRequest", "read_window", "read_raster",
           "read_region", "RasterWindows", "valid_window", "footprints_meet", "marks_invalid", "describe", "PILLOW_SUFFIXES",
           "is_sidecar", "opens_as_raster", "SIDECAR_SUFFIXES", "RASTER_SUFFIXES", "window_grid"]

RASTER_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".jp2", ".j2k", ".bmp", ".webp", ".gif", ".img", ".vrt",
                   ".dat", ".bsq", ".bil", ".bip", ".envi", ".ntf", ".nitf", ".hdf", ".h5", ".nc", ".kea", ".rst",
                   ".sdat", ".ers", ".asc", ".pix")
"""Suffixes taken to be rasters without opening the file; any other file is a raster if GDAL opens it."""

SIDECAR_SUFFIXES = (".hdr", ".aux.xml", ".ovr", ".msk", ".prj", ".tfw", ".tifw", ".tiffw", ".pgw", ".pngw", ".jgw",
                    ".jpgw", ".jpegw", ".j2w", ".bpw", ".bmpw", ".gfw", ".wld", ".rrd", ".xml", ".qml", ".sta",
                    ".rdc", ".ref", ".sdw", ".imd", ".rpb", ".til", ".vat.dbf", ".ovr.aux.xml", ".stx")
"""Files that belong to a raster (header, statistics, overviews, world file, projection), not rasters themselves."""


def is_sidecar(path: Path) -> bool:
    """Whether ``path`` is a sidecar file of some raster (by its suffix)."""
    name = path.name.lower()
    return any(name.endswith(s) for s in SIDECAR_SUFFIXES)


@dataclass(frozen=True)
class Georef:
    """Where a raster lies: CRS (WKT), affine transform ``(a, b, c, d, e, f)`` and no-data value.

    ``crs`` and ``transform`` are None for a raster without georeferencing (a plain PNG).
    """

    crs: str | None = None
    transform: tuple[float, ...] | None = None
    nodata: float | None = None

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and self.transform is not None

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform) if self.transform is not None else Affine.identity()

    def same_grid(self, other: "Georef", height: int, width: int, other_height: int, other_width: int) -> bool:
        """Whether ``other`` covers the very same pixels (CRS, transform and size; no-data aside)."""
        if (height, width) != (other_height, other_width):
            return False
        if not (self.georeferenced and other.georeferenced):
            return self.georeferenced == other.georeferenced
        return rasterio.crs.CRS.from_wkt(self.crs) == rasterio.crs.CRS.from_wkt(other.crs) and self.affine.almost_equals(
            other.affine, precision=1e-9 * max(1.0, abs(self.affine.a)))

    def for_window(self, top: int, left: int) -> "Georef":
        """The georeferencing of a window of this raster whose corner is pixel ``(top, left)``."""
        if self.transform is None:
            return self
        return Georef(self.crs, tuple(self.affine @ Affine.translation(left, top))[:6], self.nodata)


@dataclass(frozen=True)
class RasterInfo:
    """What a raster's header says; reading it decodes no pixels."""

    path: Path
    driver: str
    height: int
    width: int
    count: int
    dtype: str
    georef: Georef
    block_shape: tuple[int, int]  # (rows, cols) of the first band's blocks
    windowed: bool  # a window read decodes only the blocks under it (tiles or strips of a format that allows it)
    palette: bool

    @property
    def area(self) -> int:
        return self.height * self.width


_WINDOW_DRIVERS = ("GTiff", "COG", "ENVI", "HFA", "VRT", "JP2OpenJPEG", "BMP", "EHdr", "KEA", "netCDF", "HDF5", "NITF")


@contextlib.contextmanager
def open_raster(path: str | Path | RasterRef, sources: SourcePolicy | None = None) -> Iterator[rasterio.io.DatasetReader]:
    """Open a raster for reading; a missing or unreadable file is a :class:`DatasetError` naming it.

    A VRT is checked first (:func:`~densechange.datasets.io.sources.check_sources`: its sources stay in the
    dataset folder), GDAL opens it with raw bands and Python pixel functions off, and a file whose blocks are
    each decoded whole is refused when a block is over the strip bound (:mod:`~densechange.datasets.io.limits`).
    ``sources``: where a VRT may read from (default: the process's :func:`~densechange.datasets.io.sources.source_policy`).

    A :class:`~densechange.datasets.io.remote.RasterRef` (a URL, a STAC item's bands as a VRT in memory)
    is what the user named on the command line, not a file of a dataset: it is opened by its GDAL
    name, with the same options, and named in errors by its redacted URL.
    """
    if isinstance(path, RasterRef):
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(), rasterio.Env(**GDAL_READ_OPTIONS):
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                src = rasterio.open(path.gdal)
        except RasterioError as err:  # GDAL's message may hold a secret query: not chained
            raise path.error("opening it as a raster", err, time.perf_counter() - start) from None
    else:
        path = Path(path)
        src = _open_file(path, sources)
    try:
        if src.count:
            rows, cols = src.block_shapes[0]
            interleaved = src.interleaving == Interleaving.pixel
            check_strip(path, rows, cols, src.count if interleaved else 1, src.dtypes[0],
                        "each block (strip) GDAL decodes at once")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            yield src
    finally:
        src.close()


def _open_file(path: Path, sources: SourcePolicy | None) -> rasterio.io.DatasetReader:
    if not path.exists():
        raise DatasetError(f"{path}: file not found.")
    check_sources(path, sources)
    try:
        with warnings.catch_warnings(), rasterio.Env(**GDAL_READ_OPTIONS):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as err:
        raise DatasetError(f"{path}: cannot open as a raster ({_first_line(err)}). The file is corrupt or not an image "
                           "that GDAL reads; re-export it or remove it from the dataset.") from err


def georef_of(src: Any) -> Georef:
    """The :class:`Georef` of an open dataset."""
    crs = src.crs.to_wkt() if src.crs is not None else None
    transform = tuple(src.transform)[:6] if src.crs is not None or not src.transform.is_identity else None
    nodata = src.nodata
    return Georef(crs, transform, float(nodata) if nodata is not None else None)


def describe(src: Any, path: Path) -> RasterInfo:
    """:class:`RasterInfo` of an open dataset."""
    block = tuple(src.block_shapes[0]) if src.count else (src.height, src.width)
    one_strip = src.driver in ("GTiff", "COG") and block[0] >= src.height and src.height * src.width > 2048**2
    windowed = src.driver in _WINDOW_DRIVERS and not one_strip
    palette = src.count >= 1 and src.colorinterp[0] == ColorInterp.palette
    return RasterInfo(path, src.driver, src.height, src.width, src.count, src.dtypes[0], georef_of(src), block,
                      windowed, palette)


def footprints_meet(a: RasterInfo, b: RasterInfo) -> bool:
    """Whether the footprints of two georeferenced rasters intersect (B's bounds taken into A's CRS)."""
    from rasterio.crs import CRS
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    bounds_a = array_bounds(a.height, a.width, a.georef.affine)  # (west, south, east, north)
    bounds_b = transform_bounds(CRS.from_wkt(b.georef.crs), CRS.from_wkt(a.georef.crs),
                                *array_bounds(b.height, b.width, b.georef.affine))
    return min(bounds_a[2], bounds_b[2]) > max(bounds_a[0], bounds_b[0]) and \
        min(bounds_a[3], bounds_b[3]) > max(bounds_a[1], bounds_b[1])


def opens_as_raster(path: Path) -> bool:
    """Whether GDAL recognises ``path`` as a raster (reads its header only).

    A VRT that :func:`~densechange.datasets.io.sources.check_sources` refuses counts as a raster, so that reading
    it reports why instead of skipping it; another refused file (a service description) is not opened, and not a
    raster.
    """
    try:
        check_sources(path)
    except DatasetError:
        return is_vrt(path)
    try:
        with warnings.catch_warnings(), rasterio.Env(**GDAL_READ_OPTIONS):
            warnings.simplefilter("ignore")
            with rasterio.open(path):
                return True
    except (RasterioError, OSError):
        return False


def raster_info(path: str | Path) -> RasterInfo:
    """Size, bands, dtype, tiling and georeferencing of ``path``, without decoding pixels."""
    with open_raster(path) as src:
        return describe(src, Path(path))


def marks_invalid(src: Any, use_nodata: bool = True) -> bool:
    """Whether the raster marks pixels as invalid: a no-data value (unless not ``use_nodata``) or a per-dataset
    mask (not just alpha)."""
    return any(use_nodata and MaskFlags.nodata in f or MaskFlags.per_dataset in f and MaskFlags.alpha not in f
               for f in src.mask_flag_enums)


def _expand_palette(src: Any, indices: np.ndarray) -> np.ndarray:
    """Palette indices ``(H, W)`` -> colours ``(H, W, 3|4)`` through the file's colour table."""
    table = src.colormap(1)
    lut = np.zeros((max(256, max(table) + 1), 4), np.uint8)
    for index, rgba in table.items():
        lut[index] = rgba
    alpha = (lut[:, 3] < 255).any()
    return lut[indices][..., : 4 if alpha else 3]


@dataclass(frozen=True)
class WindowRequest:
    """Which pixels :func:`read_window` reads, and what fills the part of the window past the raster.

    Args:
        top, left, height, width: the window in pixels (height / width None: to the raster's edge).
        bands: 1-based band indexes, any sequence (default: all).
        pad: ``constant`` fills the part past the raster with ``fill``; ``edge`` repeats the last row
            and column. Either way that part is invalid.
    """

    top: int = 0
    left: int = 0
    height: int | None = None
    width: int | None = None
    bands: Sequence[int] | None = None
    pad: str = "constant"
    fill: float = 0


WHOLE_RASTER = WindowRequest()


def read_window(src: Any, request: WindowRequest = WHOLE_RASTER, *, path: str | Path | RasterRef | None = None,
                expand_palette: bool = True, use_nodata: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels of a window as ``(h, w, C)`` in the file's dtype, and where they are valid.

    Args:
        src: an open dataset (:func:`open_raster`, or a ``WarpedVRT`` of one).
        request: the window, bands and padding (default: the whole raster, every band).
        path: the file, named in errors (default: the dataset's name).
        expand_palette: palette images come as their colours (images) or as indices (masks).
        use_nodata: the no-data value marks invalid pixels; when False only a mask band does (labels,
            whose no-data value exports often set to a class value).
    Returns:
        ``(pixels, valid)``; ``valid`` is ``(h, w)`` bool, or None when the raster marks no pixel invalid.
    """
    top, left, pad, fill = request.top, request.left, request.pad, request.fill
    height, width = request.height, request.width
    height = src.height - top if height is None else height
    width = src.width - left if width is None else width
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + height, src.height), min(left + width, src.width)
    inner = Window(c0, r0, max(c1 - c0, 0), max(r1 - r0, 0))
    indexes = list(request.bands) if request.bands else list(range(1, src.count + 1))
    where = path or getattr(src, "name", "raster")
    check_pixels(where, int(inner.height), int(inner.width), "the window read" if (height, width) != (
        src.height, src.width) else "the raster read whole")
    start = time.perf_counter()
    try:
        data = src.read(indexes, window=inner) if inner.width and inner.height else np.zeros(
            (len(indexes), 0, 0), src.dtypes[0])
        valid = None
        if marks_invalid(src, use_nodata) and inner.width and inner.height:
            valid = src.dataset_mask(window=inner) > 0
    except RasterioError as err:
        if isinstance(path, RasterRef):  # GDAL's message may hold a secret query: not chained
            raise path.error("reading its pixels", err, time.perf_counter() - start) from None
        raise DatasetError(f"{where}: cannot decode the pixels ({_first_line(err)}). The file is corrupt or truncated; "
                           "re-export it or remove it from the dataset.") from err
    arr = np.moveaxis(data, 0, -1)
    if expand_palette and src.count == 1 and src.colorinterp[0] == ColorInterp.palette:
        arr = _expand_palette(src, arr[..., 0])
    elif src.count and src.tags(indexes[0], "IMAGE_STRUCTURE").get("NBITS") == "1" and expand_palette:
        arr = arr * np.uint8(255)  # bilevel images: 0/255 like any other 8-bit image
    before, after = (r0 - top, c0 - left), (top + height - r1, left + width - c1)
    if any(before) or any(after):
        widths = [(before[0], after[0]), (before[1], after[1]), (0, 0)]
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            arr = np.full((height, width, arr.shape[2]), fill, dtype=arr.dtype)
        else:
            arr = np.pad(arr, widths, mode="edge") if pad == "edge" else np.pad(arr, widths, constant_values=fill)
        inside = np.zeros((height, width), bool)
        inside[before[0] : before[0] + (r1 - r0), before[1] : before[1] + (c1 - c0)] = True if valid is None else valid
        valid = inside
    return arr, valid


def valid_window(src: Any, top: int, left: int, height: int, width: int) -> np.ndarray | None:
    """Only the validity of a window (``(h, w)`` bool), or None when the raster marks no pixel invalid."""
    if not marks_invalid(src):
        return None
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + height, src.height), min(left + width, src.width)
    out = np.zeros((height, width), bool)
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = src.dataset_mask(window=Window(c0, r0, c1 - c0, r1 - r0)) > 0
    return out


PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
"""Whole-file formats decoded by pillow: as fast as GDAL, and pillow reports a truncated file, where
GDAL's PNG and JPEG drivers may return made-up pixels."""

_PILLOW_DTYPES = {"I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16", "I;16N": "uint16", "I": "int32",
                  "F": "float32"}  # of a pixel's band, by pillow mode; any other mode: uint8

# Pillow raises these for unreadable, truncated or malformed files.
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError)


def _pillow_read(path: Path, expand_palette: bool) -> np.ndarray:
    """Decode ``path`` with pillow as ``(H, W, C)``; palette images as colours or as their indices."""
    pillow_bound()
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            check_pixels(path, im.height, im.width, "the image (decoded whole)")
            check_strip(path, im.height, im.width, len(im.getbands()) if im.mode not in ("P", "PA") else 4,
                        _PILLOW_DTYPES.get(im.mode, "uint8"), "the image pillow decodes whole")
            if im.mode in ("P", "PA") and expand_palette:
                arr = np.asarray(im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB"))
            else:
                arr = np.asarray(im)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: file not found.") from err
    except DatasetError:  # a bound refused the image before decoding (DatasetError is a ValueError)
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # pillow's own check, at open
        info = raster_info(path)  # the header alone, for the sizes
        check_pixels(path, info.height, info.width, "the image (decoded whole)")
        raise DatasetError(f"{path}: {err} ({IMAGE_PIXELS_ENV} raises the bound.) Convert it to a tiled GeoTIFF, or "
                           "cut it into tiles with `densechange tile`.") from err
    except _PILLOW_ERRORS as err:
        raise DatasetError(f"{path}: cannot decode the image ({err}). The file is corrupt or not an image; "
                           "re-export it or remove it from the dataset.") from err
    if arr.dtype == np.bool_:  # bilevel: 0/255 as an image, 0/1 as a mask
        arr = arr.astype(np.uint8) * np.uint8(255 if expand_palette else 1)
    return arr[..., None] if arr.ndim == 2 else arr


def read_raster(path: str | Path, *, expand_palette: bool = True, use_nodata: bool = True
                ) -> tuple[np.ndarray, np.ndarray | None, Georef]:
    """The whole raster as ``(H, W, C)`` in its dtype, its validity (or None) and its georeferencing."""
    path = Path(path)
    if path.suffix.lower() in PILLOW_SUFFIXES:
        arr = _pillow_read(path, expand_palette)
        georef = raster_info(path).georef if _has_world_file(path) else Georef()
        return arr, None, georef
    with open_raster(path) as src:
        arr, valid = read_window(src, path=path, expand_palette=expand_palette, use_nodata=use_nodata)
        return arr, valid, georef_of(src)


def read_region(path: str | Path, top: int, left: int, height: int, width: int, *, expand_palette: bool = True,
                fill: float = 0, use_nodata: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """A window of a raster file: only its blocks are decoded, except for whole-file formats (PNG, JPEG)."""
    path = Path(path)
    if path.suffix.lower() not in PILLOW_SUFFIXES:
        with open_raster(path) as src:
            return read_window(src, WindowRequest(top, left, height, width, fill=fill), path=path,
                               expand_palette=expand_palette, use_nodata=use_nodata)
    arr = _pillow_read(path, expand_palette)
    out = np.full((height, width, arr.shape[2]), fill, arr.dtype)
    r0, c0, r1, c1 = max(top, 0), max(left, 0), min(top + height, arr.shape[0]), min(left + width, arr.shape[1])
    if r1 <= r0 or c1 <= c0:
        return out, np.zeros((height, width), bool)
    out[r0 - top : r1 - top, c0 - left : c1 - left] = arr[r0:r1, c0:c1]
    if (r0 - top, c0 - left, r1 - r0, c1 - c0) == (0, 0, height, width):
        return out, None
    valid = np.zeros((height, width), bool)
    valid[r0 - top : r1 - top, c0 - left : c1 - left] = True
    return out, valid


WHOLE_FILE_DRIVERS = frozenset({"PNG", "JPEG", "GIF", "WEBP"})
"""GDAL drivers of formats without blocks to seek to: a window is decoded from the file's first row."""


class ForwardRows:
    """A dataset of a whole-file format read forward, in full-width strips of rows.

    GDAL decodes a PNG or JPEG from its first row, and starts over for any window that begins above
    the last row it decoded. Windows read block by block across a scene (left to right, then down)
    would decode the file again for every block: a cost that grows with the square of the scene.
    Reads through this wrapper decode each row once, as long as window tops never move up (the
    streaming order): it keeps the rows from the latest window's top down to the lowest row read,
    across the full width, and decodes only rows below them. That strip is the memory cost, in
    proportion to the width (a block row of 1,100 rows of a 50,000 px wide RGB scene: 165 MB); a
    window above it is read from the file directly. Everything else passes through to ``src``.
    """

    def __init__(self, src: Any) -> None:
        self.src = src
        self.masked = marks_invalid(src)
        self.top = 0
        self.rows = np.zeros((src.count, 0, src.width), src.dtypes[0])
        self.mask = np.zeros((0, src.width), np.uint8)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.src, name)

    def _strip(self, window: Window) -> tuple[int, int, int, int] | None:
        """The window's rows in the strip (decoding down to its bottom), or None when it starts above the strip."""
        r0, c0 = int(window.row_off), int(window.col_off)
        r1, c1 = r0 + int(window.height), c0 + int(window.width)
        if r0 < self.top:
            return None
        if r0 > self.top:  # rows above this window are never read again
            self.rows, self.mask, self.top = self.rows[:, r0 - self.top :], self.mask[r0 - self.top :], r0
        end = self.top + self.rows.shape[1]
        if r1 > end:
            check_strip(self.src.name, r1 - self.top, self.src.width, self.src.count, self.src.dtypes[0],
                        "the strip of rows decoded from the top (the format has no blocks to seek to)")
            new = Window(0, end, self.src.width, r1 - end)
            self.rows = np.concatenate([self.rows, self.src.read(window=new)], axis=1)
            if self.masked:
                self.mask = np.concatenate([self.mask, self.src.dataset_mask(window=new)], axis=0)
        return r0 - self.top, r1 - self.top, c0, c1

    def read(self, indexes: list[int] | None = None, window: Window | None = None, **kwargs: Any) -> np.ndarray:
        if window is None or kwargs:
            return self.src.read(indexes, window=window, **kwargs)
        at = self._strip(window)
        if at is None:
            return self.src.read(indexes, window=window)
        i0, i1, c0, c1 = at
        if isinstance(indexes, int):  # one band: (h, w), as rasterio gives it
            return self.rows[indexes - 1, i0:i1, c0:c1]
        bands = [i - 1 for i in indexes] if indexes is not None else slice(None)
        return self.rows[bands, i0:i1, c0:c1]

    def dataset_mask(self, window: Window | None = None, **kwargs: Any) -> np.ndarray:
        at = self._strip(window) if window is not None and not kwargs and self.masked else None
        if at is None:
            return self.src.dataset_mask(window=window, **kwargs)
        i0, i1, c0, c1 = at
        return self.mask[i0:i1, c0:c1]


def forward_rows(src: Any) -> Any:
    """``src`` wrapped in :class:`ForwardRows` when its format has no blocks to seek to, else ``src`` itself."""
    return ForwardRows(src) if getattr(src, "driver", None) in WHOLE_FILE_DRIVERS else src


class RasterWindows:
    """One raster read window after window: only each window's blocks are decoded, except for
    whole-file formats (PNG, JPEG), which are decoded once for all their windows.

    Use as a context manager; the file stays open until it exits.

    Example:
        >>> with RasterWindows("scene.tif") as raster:
        ...     crop, valid = raster.read(512, 1024, 256, 256)
    """

    def __init__(self, path: str | Path, *, expand_palette: bool = True, use_nodata: bool = True) -> None:
        self.path, self.expand_palette, self.use_nodata = Path(path), expand_palette, use_nodata
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "RasterWindows":
        self.info = raster_info(self.path)
        self.whole: tuple[np.ndarray, np.ndarray | None] | None = None
        if self.path.suffix.lower() in PILLOW_SUFFIXES:
            self.whole = read_raster(self.path, expand_palette=self.expand_palette, use_nodata=self.use_nodata)[:2]
        else:
            self.src = self._stack.enter_context(open_raster(self.path))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def read(self, top: int, left: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(pixels (h, w, C), valid (h, w) or None)`` of a window inside the raster."""
        if self.whole is None:
            return read_window(self.src, WindowRequest(top, left, height, width), path=self.path,
                               expand_palette=self.expand_palette, use_nodata=self.use_nodata)
        arr, valid = self.whole
        rows, cols = slice(top, top + height), slice(left, left + width)
        return arr[rows, cols], None if valid is None else valid[rows, cols]


def window_grid(height: int, width: int, side: int = 1024) -> list[tuple[int, int, int, int]]:
    """``(top, left, h, w)`` of the ``side x side`` windows that tile a ``height x width`` raster, row by row."""
    return [(top, left, min(side, height - top), min(side, width - left))
            for top in range(0, height, side) for left in range(0, width, side)]


def _has_world_file(path: Path) -> bool:
    """Whether a plain image has a world file or an .aux.xml beside it (then GDAL knows where it lies)."""
    stem, suffix = path.with_suffix(""), path.suffix.lower()
    candidates = [path.with_name(path.name + ".aux.xml"), stem.with_suffix(suffix + "w"), stem.with_suffix(".wld"),
                  stem.with_suffix("." + suffix[1] + suffix[-1] + "w")]
    return any(c.exists() for c in candidates)
