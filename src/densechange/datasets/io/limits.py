"""The bounds on what one read may decode, checked against a file's declared sizes before decoding.

A PNG of 1 MB may declare 400,000 x 1,200 pixels, a GeoTIFF of 50 KB a 1,000,000² image: decoding
either whole would ask for gigabytes (or terabytes). The header says how much a read will decode
before any pixel is; each bound turns a read over it into a :class:`DatasetError` that names the
bound and the variable that raises it, instead of a swapping machine or a failed allocation.

| bound | default | environment variable |
| --- | --- | --- |
| pixels of an image decoded whole (PNG, JPEG by pillow; a whole-raster or one-window read) | 89,478,485 (pillow's) | ``DENSECHANGE_MAX_IMAGE_PIXELS`` |
| bytes of one strip or block that the format decodes at once (width x bands x rows) | 512 MiB | ``DENSECHANGE_MAX_STRIP_BYTES`` |
| GDAL's block cache (``GDAL_CACHEMAX``), in MB | 256 | ``DENSECHANGE_GDAL_CACHE_MB`` |

Windows of a tiled raster decode only their blocks, so a huge tiled scene is read (and predicted)
window by window within these bounds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from densechange.datasets.errors import DatasetError

__all__ = ["IMAGE_PIXELS_ENV", "STRIP_BYTES_ENV", "GDAL_CACHE_ENV", "ReadLimits", "read_limits", "check_pixels",
           "check_strip", "check_bytes", "pillow_bound"]

IMAGE_PIXELS_ENV = "DENSECHANGE_MAX_IMAGE_PIXELS"
STRIP_BYTES_ENV = "DENSECHANGE_MAX_STRIP_BYTES"
GDAL_CACHE_ENV = "DENSECHANGE_GDAL_CACHE_MB"

DEFAULT_IMAGE_PIXELS = 89_478_485  # pillow's MAX_IMAGE_PIXELS (1024**3 // 4 // 3)
DEFAULT_STRIP_BYTES = 512 << 20
DEFAULT_GDAL_CACHE_MB = 256


@dataclass(frozen=True)
class ReadLimits:
    """The bounds in force (see the module docstring)."""

    image_pixels: int = DEFAULT_IMAGE_PIXELS
    strip_bytes: int = DEFAULT_STRIP_BYTES
    gdal_cache_mb: int = DEFAULT_GDAL_CACHE_MB


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        value = 0
    if value <= 0:
        raise DatasetError(f"{name}={os.environ[name]!r} must be a positive whole number.")
    return value


def read_limits() -> ReadLimits:
    """The bounds of this process: the environment's, else the defaults (read on every call: cheap)."""
    return ReadLimits(_env_int(IMAGE_PIXELS_ENV, DEFAULT_IMAGE_PIXELS), _env_int(STRIP_BYTES_ENV, DEFAULT_STRIP_BYTES),
                      _env_int(GDAL_CACHE_ENV, DEFAULT_GDAL_CACHE_MB))


def check_pixels(path: str | Path, height: int, width: int, what: str = "the image") -> None:
    """Refuse decoding ``height x width`` pixels at once when that is over the pixel bound."""
    limit = read_limits().image_pixels
    if height * width > limit:
        raise DatasetError(f"{path}: {what} is {height}x{width} = {height * width:,} pixels, over the {limit:,} pixels "
                           f"one read may decode at once ({IMAGE_PIXELS_ENV} raises it). Convert the file to a tiled "
                           "GeoTIFF or cut it into tiles with `densechange tile`, which read it window by window.")


TILE_HINT = "Convert the file to a tiled GeoTIFF (`gdal_translate -co TILED=YES`), or cut it into tiles."


def check_strip(path: str | Path, rows: int, width: int, bands: int, dtype: str | np.dtype, what: str,
                hint: str = TILE_HINT) -> None:
    """Refuse a strip or block of ``rows x width x bands`` that is over the strip bound (GDAL decodes it whole)."""
    check_bytes(path, rows * width * bands * np.dtype(dtype).itemsize,
                f"{what} of {rows}x{width}x{bands} {np.dtype(dtype).name}", hint)


def check_bytes(path: str | Path, size: int, what: str, hint: str = TILE_HINT) -> None:
    """Refuse ``size`` bytes held at once for one strip (``what``) when that is over the strip bound."""
    limit = read_limits().strip_bytes
    if size > limit:
        raise DatasetError(f"{path}: {what} is {size:,} bytes, over the {limit:,} bytes one strip may take "
                           f"({STRIP_BYTES_ENV} raises it). {hint}")


def pillow_bound() -> None:
    """Pillow refuses, rather than warns about, images over the pixel bound (its decompression-bomb check)."""
    Image.MAX_IMAGE_PIXELS = read_limits().image_pixels
