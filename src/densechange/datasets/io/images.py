"""Reading and writing rasters, and turning stored mask values into class ids.

Every reader keeps the file's own dtype (uint8, uint16, float32, ...) so that the conversion to
model input happens in exactly one place, :func:`to_float_image`. Every mask, whatever its storage
convention (0/255, 0/1, class ids, a no-data value), goes through :func:`normalize_mask`, which is
where ignored pixels become :data:`IGNORE_INDEX`.

Example:
    >>> img = to_float_image(read_image("A/tile.png"))          # (C, H, W) in [0, 1]
    >>> mask = normalize_mask(read_mask("label/tile.png"), ignore_value=255, mask_mode="ids")
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
import torch
from PIL import Image

from densechange.datasets.errors import DatasetError, format_names
from densechange.datasets.io.raster import RASTER_SUFFIXES, Georef, raster_info, read_raster

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_SUFFIXES",
    "MASK_MODES",
    "check_mask_mode",
    "read_image",
    "read_mask",
    "to_float_image",
    "read_georef",
    "write_image",
    "write_mask",
    "normalize_mask",
]

IGNORE_INDEX = -1
"""In-memory label of ignored pixels everywhere in the toolkit (losses, metrics, datasets)."""

IMAGE_SUFFIXES = RASTER_SUFFIXES
MASK_MODES = ("auto", "binary255", "binary01", "ids", "ids_from_1")
_TIFF_SUFFIXES = (".tif", ".tiff")


def check_mask_mode(mask_mode: str) -> str:
    """``mask_mode`` when it is one of :data:`MASK_MODES`; an error listing them otherwise."""
    if mask_mode not in MASK_MODES:
        raise DatasetError(f"mask_mode={mask_mode!r} is not one of {MASK_MODES}.")
    return mask_mode


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``(H, W, C)`` in the file's own dtype (any format GDAL reads, any number of bands).

    Palette images are expanded to RGB(A); greyscale images get ``C = 1``; bilevel images become 0/255.
    """
    return read_raster(path, expand_palette=True)[0]


def read_image_valid(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`read_image` and where the image holds data: ``(H, W)`` bool, or None when every pixel does."""
    arr, valid, _ = read_raster(path, expand_palette=True)
    return arr, valid


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask as ``(H, W)`` integers (palette PNGs give their indices).

    A multi-band mask is accepted when its colour bands are identical (a grey mask saved as RGB);
    colour-coded masks are rejected because their colour-to-class mapping is not in the file.
    """
    arr = read_raster(path, expand_palette=False)[0]
    return mask_values(arr, path)


def mask_values(arr: np.ndarray, path: str | Path) -> np.ndarray:
    """``(H, W[, C])`` stored mask pixels -> ``(H, W)`` integers; rejects colour-coded and fractional masks."""
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[..., 0]
        else:
            colour = arr[..., :1] if arr.shape[2] == 2 else arr[..., :3]  # grey + alpha: ignore the alpha band
            if not (colour == colour[..., :1]).all():
                raise DatasetError(f"{path}: mask has {arr.shape[2]} differing bands. Save masks as single-band images "
                                   "of class ids (e.g. 0/255 or 0..K-1); colour-coded masks are not supported.")
            arr = arr[..., 0]
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise DatasetError(f"{path}: floating-point mask with non-integer values. Save masks as integer class ids.")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    return arr


def to_float_image(arr: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` or ``(H, W)`` array -> float32 tensor ``(C, H, W)``.

    Integer types are divided by their dtype's maximum (uint8 -> [0, 1], uint16 / 65535), so a
    model sees the same scale whatever the bit depth; float images are passed through unchanged.
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    out = np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
    if arr.dtype.kind in "ui":
        out /= np.float32(np.iinfo(arr.dtype).max)
    return torch.from_numpy(out)


def to_float_batch(arr: np.ndarray) -> torch.Tensor:
    """``(N, H, W, C)`` array -> float32 ``(N, C, H, W)`` in channels-last memory, scaled as :func:`to_float_image`.

    One conversion for a whole batch of windows, with no transposing copy: the array's own pixel
    order is the channels-last layout that convolutions run fastest on.
    """
    out = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)
    if arr.dtype.kind in "ui":
        out.div_(float(np.iinfo(arr.dtype).max))
    return out.permute(0, 3, 1, 2)


def read_georef(path: str | Path) -> Georef:
    """CRS, transform and no-data of ``path`` (all None for a raster without georeferencing)."""
    return raster_info(path).georef


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` image; format by suffix."""
    path = Path(path)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise DatasetError(f"{path}: write_image takes uint8 (H, W[, 1|3|4]) arrays, got {image.dtype} {image.shape}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(path)


def write_mask(path: str | Path, mask: np.ndarray, georef: Georef | None = None) -> None:
    """Write a uint8 ``(H, W)`` mask as PNG or TIFF (by suffix); a TIFF keeps ``georef``.

    Passing the :class:`Georef` read from the source image (:func:`read_georef`) makes a predicted
    change map open in GIS software at the right place.
    """
    path = Path(path)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise DatasetError(f"{path}: write_mask takes a uint8 (H, W) array, got {mask.dtype} {mask.shape}.")
    suffix = path.suffix.lower()
    if suffix not in (".png", *_TIFF_SUFFIXES):
        raise DatasetError(f"{path}: masks are written as .png, .tif or .tiff; got {suffix!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        Image.fromarray(mask).save(path)
        return
    georef = georef or Georef()
    profile = dict(driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1, dtype="uint8",
                   compress="deflate", crs=georef.crs, transform=georef.affine if georef.transform else None,
                   nodata=georef.nodata)
    if mask.shape[0] >= 512 and mask.shape[1] >= 512:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a mask of a plain image has no place on Earth
        with rasterio.open(path, "w", **{k: v for k, v in profile.items() if v is not None}) as dst:
            dst.write(mask, 1)


def _present_values(mask: np.ndarray) -> np.ndarray:
    """Sorted distinct values of ``mask``; a histogram for small unsigned types is faster than sorting."""
    if mask.dtype in (np.uint8, np.uint16):
        return np.flatnonzero(np.bincount(mask.ravel(), minlength=1))
    return np.unique(mask)


def present_values(mask: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer mask (fast path for small non-negative values)."""
    return _present_values(mask)


def resolve_mask_mode(values: np.ndarray, ignore_value: int | None = None) -> str:
    """The ``auto`` rule on a set of stored values: within {0, 1} -> binary01, within {0, 255} ->
    binary255, anything else -> ids. Datasets apply it to the values of *all* their masks, so one
    value never means different classes in different files."""
    values = np.asarray(values)
    if ignore_value is not None:
        values = values[values != ignore_value]
    if np.isin(values, (0, 1)).all():
        return "binary01"
    return "binary255" if np.isin(values, (0, 255)).all() else "ids"


def normalize_mask(
    mask: np.ndarray,
    *,
    mask_mode: str = "auto",
    ignore_value: int | None = None,
    num_classes: int | None = None,
    valid: np.ndarray | None = None,
    where: str | Path = "",
) -> np.ndarray:
    """Stored mask values -> int64 class ids, with ignored pixels set to :data:`IGNORE_INDEX`.

    Args:
        mask: ``(H, W)`` integer array as read by :func:`read_mask`.
        mask_mode: ``binary255`` (0 background, 255 foreground), ``binary01``, ``ids`` (class
            ids ``0..num_classes-1``), ``ids_from_1`` (class ids ``1..num_classes`` with 0 for
            no-data, as in LoveDA and OpenEarthMap: 0 is ignored and ``k`` becomes class ``k - 1``)
            or ``auto``: values within {0, 1} are taken as they are, values within {0, 255} as
            binary with 255 the foreground, anything else as ids.
        ignore_value: stored value of pixels to ignore (e.g. 255 or a no-data value), or None.
        num_classes: bounds the allowed ids in ``ids``/``auto`` modes.
        valid: ``(H, W)`` where the file holds data (see :func:`densechange.datasets.io.labels.read_label`); the
            rest is ignored. None: everywhere.
        where: file the mask came from, named in errors.
    """
    check_mask_mode(mask_mode)
    values = _present_values(mask)
    if ignore_value is not None:
        values = values[values != ignore_value]
    mode = resolve_mask_mode(values) if mask_mode == "auto" else mask_mode
    if mode == "binary255":
        allowed, describe = np.array([0, 255]), "0/255"
    elif mode == "binary01":
        allowed, describe = np.array([0, 1]), "0/1"
    elif mode == "ids_from_1":
        allowed = np.arange(num_classes + 1) if num_classes is not None else values[values >= 0]
        describe = f"class ids 1..{num_classes} and 0 for no-data" if num_classes else "class ids from 1, 0 for no-data"
    elif num_classes is not None:
        allowed, describe = np.arange(num_classes), f"class ids 0..{num_classes - 1}"
    else:
        allowed, describe = values[values >= 0], "non-negative class ids"
    if mask_mode == "auto":
        describe = f"0/1, 0/255 or {describe}"
    bad = values[~np.isin(values, allowed)]
    if bad.size:
        hint = f"ignore_value={ignore_value}" if ignore_value is not None else "no ignore value"
        raise DatasetError(
            f"{where or 'mask'}: unexpected mask values {format_names(bad.tolist(), 8)} (mask_mode={mask_mode!r} "
            f"expects {describe}, {hint}). Fix the file, or pass the right mask_mode / ignore_value / num_classes."
        )
    out = (mask == 255) if mode == "binary255" else mask
    out = out.astype(np.int64)
    if mode == "ids_from_1":
        out -= 1  # stored 0 (no-data) becomes -1, which is IGNORE_INDEX
        out[out < 0] = IGNORE_INDEX
    if ignore_value is not None:
        out[mask == ignore_value] = IGNORE_INDEX
    if valid is not None:
        out[~valid] = IGNORE_INDEX
    return out
