"""TIFF rasters that pillow cannot hold exactly: N-band and multi-band 16/32/64-bit images.

Pillow's image modes stop at four 8-bit bands and read a 16-bit RGB TIFF as 8-bit, which silently
throws away most of a multispectral image. This module parses the TIFF directory with pillow's own
tag reader and decodes the pixel data with numpy: strips or tiles, chunky or planar, uncompressed
or deflate, with the horizontal-differencing predictor. Whatever else a file uses (LZW, JPEG,
PackBits) is left to pillow when pillow has a mode for it, and is an error otherwise.
"""
from __future__ import annotations

import math
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import TiffImagePlugin

from .errors import DatasetError

__all__ = ["GEO_TAGS", "TiffInfo", "read_tiff_info", "read_tiff_raster"]

# ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams.
GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)

_DEFLATE = (8, 32946)
_NUMPY_COMPRESSIONS = (1, *_DEFLATE)
_KIND = {1: "u", 2: "i", 3: "f"}  # SampleFormat -> numpy kind
_TIFF_TAGS = {
    "width": 256, "height": 257, "bits": 258, "compression": 259, "photometric": 262,
    "strip_offsets": 273, "samples": 277, "rows_per_strip": 278, "strip_counts": 279,
    "planar": 284, "predictor": 317, "tile_width": 322, "tile_length": 323,
    "tile_offsets": 324, "tile_counts": 325, "sample_format": 339,
}


@dataclass(frozen=True)
class TiffInfo:
    """What the first TIFF directory says about the raster, and where its pixels are."""

    width: int
    height: int
    bands: int
    bits: tuple[int, ...]
    sample_format: tuple[int, ...]
    compression: int
    photometric: int
    planar: int
    predictor: int
    tile: tuple[int, int] | None  # (length, width) for tiled files
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    rows_per_strip: int
    big_endian: bool
    tags: dict[int, object]

    @property
    def numpy_decodable(self) -> bool:
        """True when :func:`read_tiff_raster` can decode this file exactly."""
        uniform = len(set(self.bits)) == 1 and len(set(self.sample_format)) == 1
        return (
            uniform
            and self.bits[0] in (8, 16, 32, 64)
            and self.sample_format[0] in _KIND
            and self.compression in _NUMPY_COMPRESSIONS
            and self.predictor in (1, 2)
            and (self.photometric in (1, 2, 5) or self.bands > 4)
        )

    @property
    def pillow_exact(self) -> bool:
        """True when pillow has a mode that holds every band at full precision."""
        eight_bit = all(b == 8 for b in self.bits) and all(f == 1 for f in self.sample_format)
        return self.bands == 1 or (self.bands in (3, 4) and eight_bit)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(f"{'>' if self.big_endian else '<'}{_KIND[self.sample_format[0]]}{self.bits[0] // 8}")


def _as_tuple(value: object, n: int | None = None) -> tuple[int, ...]:
    """A tag value as a tuple of ints; a single value is repeated to ``n`` entries (one per band)."""
    values = tuple(int(v) for v in (value if isinstance(value, tuple) else (value,)))
    return values * n if n is not None and len(values) == 1 else values


def read_tiff_info(path: Path) -> TiffInfo:
    """Parse the first image directory of a TIFF or BigTIFF file."""
    try:
        with open(path, "rb") as f, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # pillow warns, rather than raises, on a truncated directory
            header = f.read(8)
            if header[2:3] == b"\x2b":
                header += f.read(8)
            ifd = TiffImagePlugin.ImageFileDirectory_v2(header)
            f.seek(ifd.next)
            ifd.load(f)
    except (OSError, SyntaxError, ValueError, IndexError, struct.error) as err:
        raise DatasetError(f"{path}: not a readable TIFF file ({err}). "
                           "Re-export it or remove it from the dataset.") from err
    tags = dict(ifd)
    t = _TIFF_TAGS
    essential = (t["width"], t["height"], t["tile_offsets"] if t["tile_offsets"] in tags else t["strip_offsets"])
    if not all(tag in tags for tag in essential):
        why = "; ".join(str(w.message) for w in caught) or "no image size or data offsets"
        raise DatasetError(f"{path}: corrupt TIFF directory ({why}). Re-export it or remove it from the dataset.")
    bands = int(tags.get(t["samples"], 1))
    tiled = t["tile_offsets"] in tags
    return TiffInfo(
        width=int(tags[t["width"]]),
        height=int(tags[t["height"]]),
        bands=bands,
        bits=_as_tuple(tags.get(t["bits"], 1), bands),
        sample_format=_as_tuple(tags.get(t["sample_format"], 1), bands),
        compression=int(tags.get(t["compression"], 1)),
        photometric=int(tags.get(t["photometric"], 1)),
        planar=int(tags.get(t["planar"], 1)),
        predictor=int(tags.get(t["predictor"], 1)),
        tile=(int(tags[t["tile_length"]]), int(tags[t["tile_width"]])) if tiled else None,
        offsets=_as_tuple(tags.get(t["tile_offsets"] if tiled else t["strip_offsets"], ())),
        counts=_as_tuple(tags.get(t["tile_counts"] if tiled else t["strip_counts"], ())),
        rows_per_strip=max(min(int(tags.get(t["rows_per_strip"], 2**32 - 1)), int(tags[t["height"]])), 1),
        big_endian=header[:2] == b"MM",
        tags=tags,
    )


def _read_chunk(f: BinaryIO, info: TiffInfo, i: int, nbytes: int, path: Path) -> np.ndarray:
    """Decode chunk ``i`` (a strip or a tile) into at least ``nbytes`` raw bytes."""
    f.seek(info.offsets[i])
    data = f.read(info.counts[i])
    if len(data) < info.counts[i]:
        raise DatasetError(f"{path}: TIFF data is truncated (chunk {i}). "
                           "The file is corrupt; re-export or re-download it.")
    if info.compression in _DEFLATE:
        try:
            data = zlib.decompress(data)
        except zlib.error as err:
            raise DatasetError(f"{path}: TIFF chunk {i} does not inflate ({err}). The file is corrupt.") from err
    if len(data) < nbytes:
        raise DatasetError(f"{path}: TIFF chunk {i} holds {len(data)} bytes, expected {nbytes}. The file is corrupt.")
    return np.frombuffer(data, dtype=info.dtype, count=nbytes // info.dtype.itemsize)


def _undo_predictor(chunk: np.ndarray, axis: int) -> np.ndarray:
    """Horizontal differencing (predictor 2) stored each sample as the difference to its left neighbour."""
    return np.cumsum(chunk, axis=axis, dtype=chunk.dtype)


def _read_plane(f: BinaryIO, info: TiffInfo, first: int, per_pixel: int, path: Path) -> np.ndarray:
    """Decode one plane (all bands when chunky, one band when planar) into ``(H, W, per_pixel)``."""
    h, w, itemsize = info.height, info.width, info.dtype.itemsize
    if info.tile is None:
        rps = info.rows_per_strip
        rows = [min(rps, h - y) for y in range(0, h, rps)]
        strips = [
            _read_chunk(f, info, first + i, r * w * per_pixel * itemsize, path).reshape(r, w, per_pixel)
            for i, r in enumerate(rows)
        ]
        plane = np.concatenate(strips, axis=0).astype(info.dtype.newbyteorder("="))
        return _undo_predictor(plane, axis=1) if info.predictor == 2 else plane
    tl, tw = info.tile
    ny, nx = math.ceil(h / tl), math.ceil(w / tw)
    nbytes = tl * tw * per_pixel * itemsize
    tiles = np.stack([_read_chunk(f, info, first + i, nbytes, path) for i in range(ny * nx)])
    tiles = tiles.astype(info.dtype.newbyteorder("=")).reshape(ny, nx, tl, tw, per_pixel)
    if info.predictor == 2:
        tiles = _undo_predictor(tiles, axis=3)
    return tiles.transpose(0, 2, 1, 3, 4).reshape(ny * tl, nx * tw, per_pixel)[:h, :w]


def read_tiff_raster(path: Path, info: TiffInfo) -> np.ndarray:
    """Decode the raster of a TIFF described by ``info`` into ``(H, W, bands)`` in its own dtype."""
    if not info.numpy_decodable:
        raise DatasetError(
            f"{path}: cannot decode this TIFF ({info.bands} bands of {info.bits[0]}-bit samples, compression "
            f"{info.compression}, predictor {info.predictor}). Rewrite it uncompressed or with deflate, e.g. "
            f"`gdal_translate -co COMPRESS=DEFLATE {path.name} out.tif`."
        )
    planes = info.bands if info.planar == 2 else 1
    per_pixel = 1 if info.planar == 2 else info.bands
    per_plane = len(info.offsets) // planes
    if info.tile:
        chunks = math.ceil(info.height / info.tile[0]) * math.ceil(info.width / info.tile[1])
    else:
        chunks = math.ceil(info.height / info.rows_per_strip)
    if len(info.offsets) != len(info.counts) or per_plane != chunks or len(info.offsets) % planes:
        raise DatasetError(f"{path}: TIFF chunk tables do not match the image size. The file is corrupt.")
    with open(path, "rb") as f:
        bands = [_read_plane(f, info, p * per_plane, per_pixel, path) for p in range(planes)]
    return np.concatenate(bands, axis=2) if planes > 1 else bands[0]
