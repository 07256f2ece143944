"""Feature pyramid neck of the SaDL encoder: 1x1 laterals, nearest upsampling, addition.

Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017; the variant follows the
SaDL reference (justchenhao/SaDL_CD, ``models/FPN.py``): no 3x3 smoothing convs, so every pyramid
level is a sum of linear projections of the backbone levels at and above it.

Example:
    >>> neck = FPN([64, 128, 256, 512], out_channels=256)
    >>> p2, p3, p4, p5 = neck(backbone_levels)   # finest first, 256 channels each
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def add_upsampled(lateral: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """``lateral + nearest(top)`` at the lateral's size, the FPN's top-down step.

    When the lateral is exactly twice the coarser level each way (every level of an input that is a
    multiple of the coarsest stride), each coarse cell is added to its 2x2 block through a
    broadcasting view: the same values as upsampling first, without building the upsampled level
    (a full-size tensor at the finest level, where most of the neck's memory traffic is). Other
    sizes (e.g. 75 -> 38 -> 19) upsample, and so do ONNX export, whose files must run at any size,
    and ``torch.compile``, which fuses the upsampling into the addition itself (and makes a slower
    kernel of the broadcasting view: 20 against 26 windows/s on a 2-core CPU). Without autograd the
    sum is written into ``lateral``, which the FPN passes fresh from its 1x1 conv (2-5% faster again).
    """
    n, c, h, w = lateral.shape
    upsample = torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    if h == 2 * top.shape[-2] and w == 2 * top.shape[-1] and not upsample:
        blocks, cells = lateral.view(n, c, h // 2, 2, w // 2, 2), top[:, :, :, None, :, None]
        if lateral.requires_grad or top.requires_grad:
            return (blocks + cells).reshape(n, c, h, w)
        blocks.add_(cells)  # no autograd (prediction): the fresh lateral itself takes the sum
        return lateral
    # `size=` rather than scale_factor=2 keeps odd input sizes aligned.
    return lateral + F.interpolate(top, size=(h, w), mode="nearest")


class FPN(nn.Module):
    """Top-down feature pyramid sized from the backbone's declared channels.

    Args:
        in_channels: channels of each backbone level, finest first (``feature_info.channels()``).
        out_channels: channels of every pyramid level.
    """

    def __init__(self, in_channels: list[int], out_channels: int = 256) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("FPN needs at least one input level, got in_channels=[]")
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, kernel_size=1) for c in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Pyramid levels, finest first.

        Args:
            feats: backbone levels ``(B, C_i, H_i, W_i)``, finest first.

        Returns:
            One ``(B, out_channels, H_i, W_i)`` tensor per input level, finest first.
        """
        if len(feats) != len(self.lateral):
            raise ValueError(f"FPN was built for {len(self.lateral)} levels, got {len(feats)}")
        top = self.lateral[-1](feats[-1])
        outs = [top]
        for conv, feat in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            top = add_upsampled(conv(feat), top)
            outs.append(top)
        return outs[::-1]

    def finest_at(self, feats: list[torch.Tensor], points: torch.Tensor, image_size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
        """The finest pyramid level read at image points, without building the level.

        Every level is a sum of 1x1 projections of nearest-upsampled backbone levels, and bilinear
        reading is linear, so the value at a point is a sum over levels of the lateral projection
        of the backbone features gathered at the point's (upsampling-mapped) corner cells. Dense
        methods that only need a few hundred points per image skip the full-resolution top-down
        maps and their backward. Equal to reading ``self(feats)[0]`` with ``grid_sample``
        (``align_corners=False``, border padding) or, for ``nearest``, at
        ``floor(p) * w // W``.

        Args:
            feats: backbone levels ``(B, C_i, H_i, W_i)``, finest first.
            points: ``(B, N, 2)`` pixel coordinates ``(x, y)`` in an image of ``image_size = (H, W)``.
            mode: ``bilinear`` or ``nearest``.
        Returns:
            ``(B, N, out_channels)``.
        """
        if len(feats) != len(self.lateral):
            raise ValueError(f"FPN was built for {len(self.lateral)} levels, got {len(feats)}")
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
        for level, (conv, feat) in enumerate(zip(self.lateral, feats)):
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
