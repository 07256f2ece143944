"""Change labels as datasets store them, decoded to 0 unchanged, 1 changed, ``IGNORE_INDEX`` ignored.

Public change datasets disagree on how a label is stored, so the decoding is named by the layout
(:mod:`densechange.datasets.readers.layouts`) and done here, on whole files and on windows alike:

* ``binary``: 0/255 or 0/1; any other value (but the ignore value) is an error naming the file.
* ``threshold``: grey level at or above half the 8-bit range (128) is changed; colour files use
  the mean of their colour bands. JPEG labels (CDD) and anti-aliased ones (S2Looking) hold values
  near 0 and near 255 rather than exactly those; the threshold reads them as the annotator meant.
* ``semantic``: semantic-change maps (SECOND): a colour file is changed wherever it is not white
  (255, 255, 255), the colour of "no change"; a single-band file of class indices wherever it is not 0.

A label file whose mask band marks pixels as invalid (a GeoTIFF label written by ``densechange
tile`` marks its ignored pixels so) has them ignored, like the no-data of an image: they are read
as 0, a value every decoding accepts, and set to ``IGNORE_INDEX`` after decoding. A label's no-data
*value* is not used: exports often set it to a class value (SpaceNet's 0/255 building masks carry
no-data 0, their background).

Example:
    >>> stored, valid = read_label("OUT/00001.jpg")
    >>> ids = change_ids(stored, "threshold", valid=valid, where="OUT/00001.jpg")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from densechange.datasets.errors import DatasetError, format_names
from densechange.datasets.io.images import IGNORE_INDEX, mask_values, normalize_mask, present_values
from densechange.datasets.io.raster import RasterWindows, read_raster, read_region, window_grid

__all__ = ["CHANGE_LABELS", "THRESHOLD", "read_label", "read_label_window", "label_values", "blank_invalid", "change_ids"]

CHANGE_LABELS = ("binary", "threshold", "semantic")
THRESHOLD = 128
"""Grey level (8-bit scale) from which a ``threshold`` label is changed."""


def blank_invalid(stored: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Stored label pixels with those not ``valid`` set to 0 (in place), so that no decoding rejects a no-data value."""
    if valid is not None and not valid.all():
        stored[~valid] = 0
    return stored


def read_label(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """A label file whole, as stored (``(H, W, C)`` in its dtype, palette indices not expanded), and where it holds data.

    Returns:
        ``(stored, valid)``: pixels outside the mask band read as 0; ``valid`` is None when the file marks none.
    """
    stored, valid, _ = read_raster(path, expand_palette=False, use_nodata=False)
    return blank_invalid(stored, valid), valid


def label_values(path: str | Path, side: int = 1024) -> np.ndarray:
    """The distinct stored values of a single-band label (no-data read as 0), read window by window.

    Every value of the file counts, as when it is read whole, but only one window is held at a time.
    """
    with RasterWindows(path, expand_palette=False, use_nodata=False) as raster:
        found = [present_values(mask_values(blank_invalid(stored.copy(), valid), path))
                 for stored, valid in (raster.read(*w) for w in window_grid(raster.info.height, raster.info.width, side))]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def read_label_window(path: str | Path, top: int, left: int, height: int, width: int
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """A window of a label file as stored and where it holds data (padding past the edge is not valid, and reads 0)."""
    stored, valid = read_region(path, top, left, height, width, expand_palette=False, use_nodata=False)
    return blank_invalid(stored, valid), valid


def _colour_bands(stored: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` -> the colour bands only: grey + alpha keeps grey, RGBA keeps RGB."""
    if stored.ndim == 2:
        return stored[..., None]
    bands = stored.shape[2]
    return stored[..., : 1 if bands == 2 else 3 if bands == 4 else bands]


def _grey(stored: np.ndarray) -> np.ndarray:
    colour = _colour_bands(stored)
    return colour[..., 0] if colour.shape[2] == 1 else colour.mean(axis=2)


def _threshold(dtype: np.dtype) -> float:
    """128 on the 8-bit scale; half the range of wider integer types."""
    if dtype.kind in "ui" and np.iinfo(dtype).max > 255:
        return (np.iinfo(dtype).max + 1) / 2
    return THRESHOLD


def _ignored(ignore_value: int | None) -> str:
    return f"ignore_value={ignore_value}" if ignore_value is not None else "no ignore value"


def change_ids(stored: np.ndarray, labels: str = "binary", *, ignore_value: int | None = None,
               valid: np.ndarray | None = None, where: str | Path = "") -> np.ndarray:
    """Stored change-label pixels (``(H, W)`` or ``(H, W, C)``) -> int64 0/1 with ``IGNORE_INDEX``.

    Args:
        labels: the decoding, one of :data:`CHANGE_LABELS` (see the module docstring).
        ignore_value: stored value (of a single-band label, or of its first band) of pixels to ignore.
        valid: ``(H, W)`` where the file holds data (:func:`read_label`); elsewhere is ignored.
        where: the file, named in errors.
    """
    if labels == "binary":
        mask = mask_values(stored, where)
        values = present_values(mask)
        values = values[values != ignore_value] if ignore_value is not None else values
        if not (np.isin(values, (0, 1)).all() or np.isin(values, (0, 255)).all()):
            odd = values[~np.isin(values, (0, 1, 255))]
            bad = odd if odd.size else values  # else 1 and 255 in one file
            raise DatasetError(
                f"{where or 'label'}: unexpected change-label values {format_names(bad.tolist(), 8)} (labels='binary' "
                f"reads 0/1 or 0/255, {_ignored(ignore_value)}). Fix the file, or set data.layout.labels=threshold "
                "(grey >= 128 is change: anti-aliased or JPEG labels), or data.ignore_value.")
        return normalize_mask(mask, mask_mode="auto", ignore_value=ignore_value, num_classes=2, valid=valid, where=where)
    if labels not in CHANGE_LABELS:
        raise DatasetError(f"labels={labels!r} is not one of {CHANGE_LABELS}.")
    if stored.dtype.kind == "f" and not np.isfinite(stored).all():
        raise DatasetError(f"{where or 'label'}: non-finite label values. Save labels as integers.")
    colour = _colour_bands(stored)
    if labels == "threshold":
        out = (_grey(stored) >= _threshold(stored.dtype)).astype(np.int64)
    elif colour.shape[2] >= 3:
        out = (colour[..., :3] != 255).any(axis=2).astype(np.int64)
    else:
        out = (colour[..., 0] != 0).astype(np.int64)
    if ignore_value is not None:
        out[colour[..., 0] == ignore_value] = IGNORE_INDEX
    if valid is not None:
        out[~valid] = IGNORE_INDEX
    return out
