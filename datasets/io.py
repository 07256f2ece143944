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

from pathlib import Path

import numpy as np
import torch
from PIL import Image, TiffImagePlugin, UnidentifiedImageError

from .errors import DatasetError, format_names
from .tiff import GEO_TAGS, TiffInfo, read_tiff_info, read_tiff_raster

__all__ = [
    "IGNORE_INDEX",
    "IMAGE_SUFFIXES",
    "MASK_MODES",
    "read_image",
    "read_mask",
    "to_float_image",
    "read_geo_tags",
    "write_image",
    "write_mask",
    "normalize_mask",
]

IGNORE_INDEX = -1
"""In-memory label of ignored pixels everywhere in the toolkit (losses, metrics, datasets)."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_MODES = ("auto", "binary255", "binary01", "ids")
_TIFF_SUFFIXES = (".tif", ".tiff")

# Pillow raises these for unreadable, truncated or malformed files.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError)


def _pillow_array(path: Path, *, expand_palette: bool) -> np.ndarray:
    """Decode ``path`` with pillow; palette images as colours or as their indices."""
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA") and expand_palette:
                return np.asarray(im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB"))
            return np.asarray(im)  # bilevel ("1") images come out as bool
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: file not found.") from err
    except Image.DecompressionBombError as err:
        raise DatasetError(f"{path}: {err} Cut the image into tiles, or raise PIL.Image.MAX_IMAGE_PIXELS.") from err
    except _DECODE_ERRORS as err:
        raise DatasetError(f"{path}: cannot decode the image ({err}). The file is corrupt or not an image; "
                           "re-export it or remove it from the dataset.") from err


def _read_raster(path: Path, *, expand_palette: bool) -> np.ndarray:
    """Raw raster of any supported file as ``(H, W)`` or ``(H, W, C)`` in the file's dtype."""
    if path.suffix.lower() in _TIFF_SUFFIXES and path.is_file():
        info = read_tiff_info(path)
        if info.numpy_decodable:
            return read_tiff_raster(path, info)
        if not info.pillow_exact:
            read_tiff_raster(path, info)  # raises the error that explains the fix
    return _pillow_array(path, expand_palette=expand_palette)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as ``(H, W, C)`` in the file's own dtype.

    PNG, JPEG, TIFF and GeoTIFF are supported, TIFF with any number of bands. Palette images are
    expanded to RGB(A); greyscale images get ``C = 1``; bilevel images become 0/255.
    """
    path = Path(path)
    arr = _read_raster(path, expand_palette=True)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    return arr[..., None] if arr.ndim == 2 else arr


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask as ``(H, W)`` integers (palette PNGs give their indices).

    A multi-band mask is accepted when its colour bands are identical (a grey mask saved as RGB);
    colour-coded masks are rejected because their colour-to-class mapping is not in the file.
    """
    path = Path(path)
    arr = _read_raster(path, expand_palette=False)
    if arr.ndim == 3:
        colour = arr[..., :1] if arr.shape[2] == 2 else arr[..., :3]  # grey + alpha: ignore the alpha band
        if not (colour == colour[..., :1]).all():
            raise DatasetError(f"{path}: mask has {arr.shape[2]} differing bands. Save masks as single-band images of "
                               "class ids (e.g. 0/255 or 0..K-1); colour-coded masks are not supported.")
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


def read_geo_tags(path: str | Path) -> dict[int, object]:
    """GeoTIFF georeferencing tags of ``path`` (tag id -> value); ``{}`` for other files."""
    path = Path(path)
    if path.suffix.lower() not in _TIFF_SUFFIXES:
        return {}
    info: TiffInfo = read_tiff_info(path)
    return {tag: info.tags[tag] for tag in GEO_TAGS if tag in info.tags}


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` image; format by suffix."""
    path = Path(path)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise DatasetError(f"{path}: write_image takes uint8 (H, W[, 1|3|4]) arrays, got {image.dtype} {image.shape}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image).save(path)


def write_mask(path: str | Path, mask: np.ndarray, geo_tags: dict[int, object] | None = None) -> None:
    """Write a uint8 ``(H, W)`` mask as PNG or TIFF (by suffix); a TIFF keeps ``geo_tags``.

    Passing the tags read from the source image with :func:`read_geo_tags` makes a predicted
    change map open in GIS software at the right place.
    """
    path = Path(path)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise DatasetError(f"{path}: write_mask takes a uint8 (H, W) array, got {mask.dtype} {mask.shape}.")
    suffix = path.suffix.lower()
    if suffix not in (".png", *_TIFF_SUFFIXES):
        raise DatasetError(f"{path}: masks are written as .png, .tif or .tiff; got {suffix!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(mask)
    if suffix in _TIFF_SUFFIXES:
        info = TiffImagePlugin.ImageFileDirectory_v2()
        for tag, value in (geo_tags or {}).items():
            if tag not in GEO_TAGS:
                raise DatasetError(f"{path}: tag {tag} is not a GeoTIFF tag; expected one of {GEO_TAGS}.")
            info[tag] = value
        im.save(path, tiffinfo=info, compression="tiff_deflate")
    else:
        im.save(path)


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
    where: str | Path = "",
) -> np.ndarray:
    """Stored mask values -> int64 class ids, with ignored pixels set to :data:`IGNORE_INDEX`.

    Args:
        mask: ``(H, W)`` integer array as read by :func:`read_mask`.
        mask_mode: ``binary255`` (0 background, 255 foreground), ``binary01``, ``ids`` (class
            ids ``0..num_classes-1``) or ``auto``: values within {0, 1} are taken as they are,
            values within {0, 255} as binary with 255 the foreground, anything else as ids.
        ignore_value: stored value of pixels to ignore (e.g. 255 or a no-data value), or None.
        num_classes: bounds the allowed ids in ``ids``/``auto`` modes.
        where: file the mask came from, named in errors.
    """
    if mask_mode not in MASK_MODES:
        raise DatasetError(f"mask_mode={mask_mode!r} is not one of {MASK_MODES}.")
    values = _present_values(mask)
    if ignore_value is not None:
        values = values[values != ignore_value]
    mode = resolve_mask_mode(values) if mask_mode == "auto" else mask_mode
    if mode == "binary255":
        allowed, describe = np.array([0, 255]), "0/255"
    elif mode == "binary01":
        allowed, describe = np.array([0, 1]), "0/1"
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
    if ignore_value is not None:
        out[mask == ignore_value] = IGNORE_INDEX
    return out
