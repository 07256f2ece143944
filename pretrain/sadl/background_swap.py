"""The synthetic third view of SaDL: keep the foreground, swap the background.

View 1 of each image is composited with view 1 of another image of the batch whose colours were
first matched to it (per-channel mean and std). Where either image has foreground (dilated 9x9,
then softened) the composite keeps view 1; elsewhere it shows the other image's background. The
same ground objects on a new background should keep their features, which teaches invariance to
context.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def match_colours(src: torch.Tensor, ref: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Give ``src (B, C, H, W)`` the per-image, per-channel mean and std of ``ref``."""
    sm, ss = src.mean((2, 3), keepdim=True), src.std((2, 3), keepdim=True)
    rm, rs = ref.mean((2, 3), keepdim=True), ref.std((2, 3), keepdim=True)
    return ((src - sm) / (ss + eps) * rs + rm).clamp(0, 1)


def soft_foreground(mask: torch.Tensor, dilate: int = 9) -> torch.Tensor:
    """``(B, H, W)`` class ids -> ``(B, 1, H, W)`` alpha in [0, 1]: foreground dilated, then box-blurred."""
    fg = (mask > 0).float()[:, None]
    pad = dilate // 2
    fg = F.max_pool2d(fg, dilate, stride=1, padding=pad)
    return F.avg_pool2d(fg, dilate, stride=1, padding=pad, count_include_pad=False)


def background_swap(view: torch.Tensor, mask: torch.Tensor, shift: int = 1) -> torch.Tensor:
    """Composite each image's view with the background of the image ``shift`` places later.

    Args:
        view: ``(B, C, H, W)`` view-1 images in [0, 1] (before normalisation).
        mask: ``(B, H, W)`` view-1 class ids (0 background, >0 foreground, <0 ignore).
    Returns:
        ``(B, C, H, W)`` synthetic view, aligned pixel for pixel with ``view``.
    """
    other = torch.roll(view, shift, 0)
    other_mask = torch.roll(mask, shift, 0)
    alpha = torch.maximum(soft_foreground(mask), soft_foreground(other_mask))
    return alpha * view + (1 - alpha) * match_colours(other, view)
