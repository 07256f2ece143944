"""Sliding-window prediction of image pairs of any size, blended at the seams.

Large tiles do not fit a network in one piece, and a network sees its window's edges as image
edges. So a pair is cut into overlapping windows, processed ``batch_size`` at a time, and each
window's output is accumulated into full-size buffers with a weight that

- is 0 within ``margin`` pixels of an edge that lies inside the image (where padding corrupts
  the output), rises linearly to 1 across the rest of the overlap, and
- stays 1 up to an edge that is the image's own border (that edge is the same in the whole image).

The result is ``sum(w * out) / sum(w)``. For a network whose output at a pixel depends only on a
neighbourhood of radius ``r <= margin``, every weighted contribution equals the whole-image output,
so the blend reproduces the whole-image prediction exactly. Window starts are multiples of
``align`` (the network's coarsest stride; the image is padded by edge replication to make that
possible), which keeps every window's feature grid aligned with the others'.

Peak memory is the full-size accumulators (``K + 2`` floats per pixel) plus one batch of windows,
whatever the number of windows.

Example:
    >>> out = sliding_window(lambda a, b: model(a, b), a, b, window=256, overlap=64, margin=8, batch_size=8, align=32)
    >>> out["logits"].shape                                   # (K, H, W)
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from engine.errors import ConfigError

WindowFn = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor | None]]


def check_windows(window: int, overlap: int, margin: int, batch_size: int, align: int = 1) -> None:
    """Raise ``ValueError`` naming the window setting that cannot work."""
    if window < 1 or window % align:
        raise ConfigError(f"window size {window} must be a positive multiple of {align} (the network's coarsest stride).")
    if not 0 <= overlap < window:
        raise ConfigError(f"window overlap {overlap} must be in [0, window size {window}).")
    if margin < 0 or (overlap > 0 or margin > 0) and overlap <= 2 * margin:
        raise ConfigError(f"window overlap {overlap} must exceed twice the margin {margin} so that every pixel keeps a "
                         "positive weight; lower the margin or raise the overlap.")
    if batch_size < 1:
        raise ConfigError(f"window batch size must be >= 1, got {batch_size}.")
    step = (window - overlap) // align * align
    if step < align or (margin > 0 and window - step <= 2 * margin):
        raise ConfigError(f"window {window} minus overlap {overlap} must be at least the network stride {align}, leaving an "
                         f"overlap above twice the margin {margin}; lower the overlap or raise the window size.")


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts ``0, stride, 2 stride, ...`` and a last window flush with the end; ``length >= window``."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def edge_weight(window: int, inner_start: bool, inner_end: bool, margin: int, ramp: int) -> torch.Tensor:
    """1-D window weight ``(window,)``: 0 within ``margin`` of an inner edge, then a linear ramp of ``ramp`` pixels to 1."""
    i = torch.arange(window, dtype=torch.float32)
    w = torch.ones(window)
    for inner, dist in ((inner_start, i), (inner_end, window - 1 - i)):
        if inner:
            w = torch.minimum(w, ((dist - margin + 1) / ramp).clamp(0, 1))
    return w


def round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def sliding_window(
    fn: WindowFn,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    window: int = 256,
    overlap: int = 64,
    margin: int = 8,
    batch_size: int = 8,
    align: int = 1,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor | None]:
    """Blend ``fn``'s outputs over overlapping windows of one image pair.

    Args:
        fn: ``(a, b) -> {"logits": (N, K, h, w), "distance": (N, 1, h', w') | None}`` for a batch
            of ``N`` windows ``(N, C, h, w)``; a coarser distance map is upsampled bilinearly.
        a, b: ``(C, H, W)`` images of the two dates, any size.
        window, overlap, margin: window side, overlap between neighbours, dead margin (pixels).
        batch_size: windows per call of ``fn``.
        align: window starts and padded size are multiples of it.
        device: where ``fn`` runs; the accumulators stay on the images' device.
    Returns:
        ``{"logits": (K, H, W), "distance": (H, W) or None}`` on the images' device, float32.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"both dates must be (C, H, W) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    check_windows(window, overlap, margin, batch_size, align)
    _, h, w = a.shape
    hp, wp = max(round_up(h, align), 1), max(round_up(w, align), 1)
    win_h, win_w = min(window, hp), min(window, wp)
    hp, wp = max(hp, win_h), max(wp, win_w)
    if (hp, wp) != (h, w):
        pad = (0, wp - w, 0, hp - h)
        a = F.pad(a[None], pad, mode="replicate")[0]
        b = F.pad(b[None], pad, mode="replicate")[0]
    stride = (window - overlap) // align * align  # check_windows guarantees stride >= align
    ramp = max(1, overlap // 2 - margin)
    ys, xs = window_starts(hp, win_h, stride), window_starts(wp, win_w, stride)
    boxes = [(y, x) for y in ys for x in xs]
    device = torch.device(device) if device is not None else a.device

    logits_sum: torch.Tensor | None = None
    dist_sum: torch.Tensor | None = None
    weight_sum = torch.zeros(hp, wp, device=a.device)
    weights: dict[tuple[bool, ...], torch.Tensor] = {}  # one 2-D weight per kind of window position
    for first in range(0, len(boxes), batch_size):
        chunk = boxes[first : first + batch_size]
        wa = torch.stack([a[:, y : y + win_h, x : x + win_w] for y, x in chunk]).to(device)
        wb = torch.stack([b[:, y : y + win_h, x : x + win_w] for y, x in chunk]).to(device)
        out = fn(wa, wb)
        logits = out["logits"].float().to(a.device)
        dist = out.get("distance")
        if dist is not None:
            dist = F.interpolate(dist.float(), size=(win_h, win_w), mode="bilinear", align_corners=False)[:, 0].to(a.device)
        if logits_sum is None:
            logits_sum = torch.zeros(logits.shape[1], hp, wp, device=a.device)
            dist_sum = torch.zeros(hp, wp, device=a.device) if dist is not None else None
        for k, (y, x) in enumerate(chunk):
            key = (y > 0, y + win_h < hp, x > 0, x + win_w < wp)
            if key not in weights:
                wy = edge_weight(win_h, key[0], key[1], margin, ramp)
                wx = edge_weight(win_w, key[2], key[3], margin, ramp)
                weights[key] = (wy[:, None] * wx[None, :]).to(a.device)
            weight = weights[key]
            logits_sum[:, y : y + win_h, x : x + win_w] += logits[k] * weight
            weight_sum[y : y + win_h, x : x + win_w] += weight
            if dist_sum is not None:
                dist_sum[y : y + win_h, x : x + win_w] += dist[k] * weight
    norm = weight_sum[:h, :w]
    return {
        "logits": logits_sum[:, :h, :w] / norm,
        "distance": dist_sum[:h, :w] / norm if dist_sum is not None else None,
    }
