"""Pictures of pseudo-masks for watching a run: image | mask of a few fixed images, at each generation.

A run without labels is judged by whether its clusters follow roofs, roads and water; seeing the
same images at every refresh shows that at a glance. Scenes of any size are shown through one
window at their centre, read by window, so a preview costs the same for a 512² tile and a whole city.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from PIL import Image

from densechange.datasets.plot import image_to_rgb, mask_to_rgb, side_by_side

__all__ = ["PREVIEW_IMAGES", "PREVIEW_SIZE", "mask_preview"]

PREVIEW_IMAGES = 4  # the first images of the dataset are shown at every generation
PREVIEW_SIZE = 512  # side of the window shown, at most


class _Windows(Protocol):
    def read_window(self, index: int, top: int, left: int, height: int, width: int) -> Any: ...


def centre_window(size: tuple[int, int], side: int = PREVIEW_SIZE) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the central window of at most ``side`` x ``side`` pixels."""
    h, w = size
    height, width = min(h, side), min(w, side)
    return (h - height) // 2, (w - width) // 2, height, width


def mask_preview(source: _Windows, masks: _Windows, index: int, size: tuple[int, int]) -> Image.Image:
    """Image ``index`` of ``source`` beside its pseudo-mask from ``masks`` (a :class:`MaskStore`), central window."""
    top, left, height, width = centre_window(size)
    pixels, _ = source.read_window(index, top, left, height, width)  # (H, W, C)
    mask = masks.read_window(index, top, left, height, width)
    return side_by_side([image_to_rgb(np.moveaxis(np.asarray(pixels, dtype=np.float32), -1, 0)), mask_to_rgb(mask)])
