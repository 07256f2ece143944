"""Seeded sample geometry: random crop or pad to a square, flips and 90-degree rotations.

The random draws for sample ``index`` in ``epoch`` come from a generator seeded by
``(seed, epoch, index)`` and nothing else, so a sample is cut the same way whatever the number of
DataLoader workers, whichever worker loads it, and after a resume from any epoch. The number of
draws is fixed, so switching flips or rotations on or off never moves the crop.

Example:
    >>> g = draw_geometry(sample_rng(0, epoch=3, index=17), 1024, 1024, crop_size=256, flip=True, rot90=True)
    >>> a, b = apply_geometry(a, g, 256, fill=0), apply_geometry(b, g, 256, fill=0)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densechange.datasets.errors import DatasetError

__all__ = ["Geometry", "sample_rng", "draw_geometry", "apply_geometry", "check_crop_size", "check_seed"]


@dataclass(frozen=True)
class Geometry:
    """Where to crop (``top``, ``left``), then which flips and how many quarter turns (counter-clockwise)."""

    top: int = 0
    left: int = 0
    hflip: bool = False
    vflip: bool = False
    rot90: int = 0


def check_seed(seed: int) -> int:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"seed={seed!r}: expected a non-negative integer.")
    return int(seed)


def check_crop_size(crop_size: int | None) -> int | None:
    if crop_size is not None and (not isinstance(crop_size, (int, np.integer)) or crop_size < 1):
        raise DatasetError(f"crop_size={crop_size!r}: expected a positive integer or None (no crop).")
    return None if crop_size is None else int(crop_size)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Generator for one sample in one epoch; independent of worker count and loading order."""
    return np.random.default_rng([seed, epoch, index])


def draw_geometry(
    rng: np.random.Generator,
    height: int,
    width: int,
    crop_size: int | None,
    *,
    flip: bool = False,
    rot90: bool = False,
) -> Geometry:
    """Draw a crop position inside ``height x width`` and the flips/rotation that are switched on.

    A side shorter than ``crop_size`` is not cropped (it is padded by :func:`apply_geometry`).
    Quarter turns of a non-square output are limited to 0 and 180 degrees so that its shape holds.
    """
    u = rng.random(5)
    top = left = 0
    if crop_size is not None:
        top = int(u[0] * (max(height - crop_size, 0) + 1))
        left = int(u[1] * (max(width - crop_size, 0) + 1))
    square = crop_size is not None or height == width
    turns = 0
    if rot90:
        turns = int(u[4] * 4) if square else 2 * int(u[4] * 2)
    return Geometry(top, left, bool(flip and u[2] < 0.5), bool(flip and u[3] < 0.5), turns)


def apply_geometry(arr: np.ndarray, geometry: Geometry, crop_size: int | None, fill: float) -> np.ndarray:
    """Apply ``geometry`` to the first two axes of ``arr`` (``(H, W)`` or ``(H, W, C)``).

    With ``crop_size``, the output is exactly ``crop_size x crop_size``: cropped at
    ``(top, left)`` and, where the input is smaller, padded at the bottom and right with ``fill``.
    """
    if crop_size is not None:
        arr = arr[geometry.top : geometry.top + crop_size, geometry.left : geometry.left + crop_size]
        pad_h, pad_w = crop_size - arr.shape[0], crop_size - arr.shape[1]
        if pad_h or pad_w:
            widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (arr.ndim - 2)
            arr = np.pad(arr, widths, mode="constant", constant_values=fill)
    if geometry.hflip:
        arr = arr[:, ::-1]
    if geometry.vflip:
        arr = arr[::-1]
    if geometry.rot90:
        arr = np.rot90(arr, geometry.rot90, axes=(0, 1))
    return np.ascontiguousarray(arr)
