"""SaDL's point read: the finest FPN level at sub-pixel image points, without building that level.

Every FPN level is a sum of 1x1 projections of nearest-upsampled backbone levels (no smoothing
convs), and bilinear reading is linear, so the value at a point is a sum over levels of the lateral
projection of the backbone features gathered at the point's (upsampling-mapped) corner cells. SaDL
needs a few hundred points per image, so it skips the full-resolution top-down maps and their
backward. Equal to reading ``neck(feats)[0]`` with ``grid_sample`` (``align_corners=False``, border
padding) or, for ``nearest``, at ``floor(p) * w // W`` (the reference's ``p // 4``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from densechange.models.fpn import FPN

MODES = ("bilinear", "nearest")


def point_features(neck: FPN, feats: list[torch.Tensor], points: torch.Tensor, image_size: tuple[int, int],
                mode: str = "bilinear") -> torch.Tensor:
    """The neck's finest level read at image points.

    Args:
        neck: the encoder's FPN.
        feats: backbone levels ``(B, C_i, H_i, W_i)``, finest first.
        points: ``(B, N, 2)`` pixel coordinates ``(x, y)`` in an image of ``image_size = (H, W)``.
        mode: ``bilinear`` (sub-pixel) or ``nearest`` (the reference's integer read).
    Returns:
        ``(B, N, neck.out_channels)``.
    """
    if len(feats) != len(neck.lateral):
        raise ValueError(f"FPN was built for {len(neck.lateral)} levels, got {len(feats)}")
    H, W = image_size
    h0, w0 = feats[0].shape[-2:]
    if mode == "bilinear":
        fx = (points[..., 0] * (w0 / W) - 0.5).clamp(0, w0 - 1)
        fy = (points[..., 1] * (h0 / H) - 0.5).clamp(0, h0 - 1)
        x0, y0 = fx.floor(), fy.floor()
        ax, ay = fx - x0, fy - y0
        x0, y0 = x0.long(), y0.long()
        x1, y1 = (x0 + 1).clamp(max=w0 - 1), (y0 + 1).clamp(max=h0 - 1)
        xs = torch.stack([x0, x1, x0, x1], -1)  # (B, N, 4)
        ys = torch.stack([y0, y0, y1, y1], -1)
        wts = torch.stack([(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay], -1)
    elif mode == "nearest":
        xs = (points[..., 0].floor().long() * w0 // W).clamp(0, w0 - 1)[..., None]
        ys = (points[..., 1].floor().long() * h0 // H).clamp(0, h0 - 1)[..., None]
        wts = torch.ones_like(xs, dtype=points.dtype)
    else:
        raise ValueError(f"point reading mode is '{mode}'; valid values: bilinear, nearest.")
    b, n, k = xs.shape
    out = None
    prev_h, prev_w = h0, w0
    for level, (conv, feat) in enumerate(zip(neck.lateral, feats)):
        h, w = feat.shape[-2:]
        if level > 0:  # nearest upsampling from (h, w) to (prev_h, prev_w) reads source floor(dst * in / out)
            ys = (ys.float() * (h / prev_h)).floor().long().clamp(max=h - 1) if h != prev_h else ys
            xs = (xs.float() * (w / prev_w)).floor().long().clamp(max=w - 1) if w != prev_w else xs
        prev_h, prev_w = h, w
        # Cells as rows (B, h*w, C): a view of a channels-last map, so neither the gather nor its
        # backward (a scatter into the map's gradient) converts the memory format of the level.
        rows = feat.permute(0, 2, 3, 1).reshape(b, h * w, -1)
        index = (ys * w + xs).view(b, n * k, 1).expand(-1, -1, rows.shape[-1])
        gathered = rows.gather(1, index).view(b, n, k, -1)
        mixed = (gathered * wts[..., None].to(gathered.dtype)).sum(2)  # (B, N, C)
        bias = conv.bias.to(mixed.dtype) if conv.bias is not None else None
        proj = F.linear(mixed, conv.weight.flatten(1).to(mixed.dtype), bias)
        out = proj if out is None else out + proj
    return out
