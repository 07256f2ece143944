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


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel mean and (unbiased) std of ``(B, C, H, W)``, each ``(B, C, 1, 1)``."""
    std, mean = torch.std_mean(x, (2, 3), keepdim=True)
    return mean, std


def match_colours(src: torch.Tensor, ref: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Give ``src (B, C, H, W)`` the per-image, per-channel mean and std of ``ref``."""
    (sm, ss), (rm, rs) = channel_stats(src), channel_stats(ref)
    return ((src - sm) / (ss + eps) * rs + rm).clamp(0, 1)


def _box(x: torch.Tensor, size: int, dim: int, reduce: str) -> torch.Tensor:
    """Maximum or mean of ``x >= 0`` over a centred window of ``size`` along ``dim``, clipped at the borders.

    Shifted slices of a zero-padded copy: ``size`` elementwise ops over the whole tensor, which is
    several times faster on CPUs than pooling a single-channel map. Zero padding leaves the maximum
    of non-negative values unchanged; the mean divides by the clipped window's length.
    """
    n, pad = x.shape[dim], size // 2
    widths = [0, 0] * (x.dim() - 1 - dim) + [pad, pad]
    padded = F.pad(x, widths)
    out = padded.narrow(dim, 0, n).clone()
    for i in range(1, size):
        window = padded.narrow(dim, i, n)
        out = torch.maximum(out, window) if reduce == "max" else out.add_(window)
    if reduce == "max":
        return out
    idx = torch.arange(n, device=x.device)
    count = (idx + pad).clamp(max=n - 1) - (idx - pad).clamp(min=0) + 1
    shape = [1] * x.dim()
    shape[dim] = n
    return out / count.view(shape).to(out.dtype)


def soft_foreground(mask: torch.Tensor, dilate: int = 9) -> torch.Tensor:
    """``(B, H, W)`` class ids -> ``(B, 1, H, W)`` alpha in [0, 1]: foreground dilated, then box-blurred.

    Equal to a ``dilate x dilate`` max pool followed by a box mean that leaves the padding out
    (``count_include_pad=False``), computed in separable 1-D passes: a box maximum is a row maximum
    of column maxima, and a clipped box's mean is a row mean of column means because its count is
    the product of its clipped row and column counts.
    """
    fg = (mask > 0).float()[:, None]
    fg = _box(_box(fg, dilate, 2, "max"), dilate, 3, "max")
    return _box(_box(fg, dilate, 2, "mean"), dilate, 3, "mean")


def background_swap(view: torch.Tensor, mask: torch.Tensor, shift: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """Composite each image's view with the background of the image ``shift`` places later.

    The other image is :func:`match_colours` of it to this view. The other image's statistics and
    alpha are this batch's, rolled along with it, so each is computed once.

    Args:
        view: ``(B, C, H, W)`` view-1 images in [0, 1] (before normalisation).
        mask: ``(B, H, W)`` view-1 class ids (0 background, >0 foreground, <0 ignore).
    Returns:
        ``(B, C, H, W)`` synthetic view, aligned pixel for pixel with ``view``.
    """
    mean, std = channel_stats(view)
    scale = std / (torch.roll(std, shift, 0) + eps)
    matched = torch.addcmul(mean - torch.roll(mean, shift, 0) * scale, torch.roll(view, shift, 0), scale).clamp_(0, 1)
    soft = soft_foreground(mask)
    alpha = torch.maximum(soft, torch.roll(soft, shift, 0))
    return torch.lerp(matched, view, alpha)
