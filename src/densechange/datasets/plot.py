"""Pictures of samples: images, masks and predictions side by side, for eyes rather than models.

Images are shown from their first three bands (one band as grey) with a per-band 2-98 percentile
stretch, so that 16-bit or dark imagery is visible. Masks use a fixed palette: 0 black, 1 white,
further classes in distinct colours, ignored pixels magenta.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from densechange.datasets.io.images import IGNORE_INDEX

__all__ = ["PALETTE", "IGNORE_COLOUR", "image_to_rgb", "mask_to_rgb", "prediction_to_mask", "side_by_side"]

PALETTE = np.array(
    [
        (0, 0, 0), (255, 255, 255), (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128),
    ],
    dtype=np.uint8,
)
IGNORE_COLOUR = np.array((255, 0, 255), dtype=np.uint8)


def image_to_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(C, H, W)`` image -> ``(H, W, 3)`` uint8 for display."""
    x = torch.as_tensor(image).detach().float().cpu().numpy()
    x = x[:3] if x.shape[0] >= 3 else np.repeat(x[:1], 3, axis=0)
    lo = np.percentile(x, 2, axis=(1, 2), keepdims=True)
    hi = np.percentile(x, 98, axis=(1, 2), keepdims=True)
    x = np.clip((x - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    return (x.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def mask_to_rgb(mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(H, W)`` class ids (``IGNORE_INDEX`` allowed) -> ``(H, W, 3)`` uint8 colours."""
    m = torch.as_tensor(mask).detach().long().cpu().numpy()
    out = PALETTE[np.clip(m, 0, None) % len(PALETTE)]
    out[m == IGNORE_INDEX] = IGNORE_COLOUR
    return out


def prediction_to_mask(prediction: torch.Tensor | np.ndarray) -> np.ndarray:
    """A prediction as class ids: ``(H, W)`` ids, ``(K, H, W)`` logits (argmax) or ``(1, H, W)`` probability (> 0.5)."""
    p = torch.as_tensor(prediction).detach().cpu()
    if p.ndim == 3:
        p = (p[0] > 0.5).long() if p.shape[0] == 1 else p.argmax(0)
    return p.long().numpy()


def side_by_side(panels: list[np.ndarray], gap: int = 4) -> Image.Image:
    """Join ``(H, W, 3)`` uint8 panels left to right with a white gap between them."""
    height = max(p.shape[0] for p in panels)
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255) for p in panels]
    row = [x for p in padded for x in (p, spacer)][:-1]
    return Image.fromarray(np.concatenate(row, axis=1))
