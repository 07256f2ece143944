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


_FAST_TOP_DOWN = True


def set_fast_top_down(enable: bool = True) -> None:
    """Switch the FPN's top-down step between its fast form and plain upsampling (as timm's
    ``set_fused_attn``): the forms agree (``tests/models/test_fpn.py``), so this is for comparing them."""
    global _FAST_TOP_DOWN
    _FAST_TOP_DOWN = bool(enable)


def top_down(lateral: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """``lateral + nearest(top)`` at the lateral's size: the FPN's top-down step, the one place it is written.

    The fast form applies where the lateral is exactly twice the coarser level each way (every level
    of an input that is a multiple of the coarsest stride): each coarse cell is added to its 2x2 block
    through a broadcasting view, the same values as upsampling first without building the upsampled
    level, and without autograd the sum goes into ``lateral`` itself (the FPN hands it over fresh from
    its 1x1 conv). Other sizes (75 -> 38 -> 19) upsample, and so do ONNX export, whose files must run
    at any size, and ``torch.compile``, which fuses upsampling and addition into one kernel by itself.
    Speeds of both forms: ``docs/prediction.md``.
    """
    n, c, h, w = lateral.shape
    fast = _FAST_TOP_DOWN and not (torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())
    if fast and h == 2 * top.shape[-2] and w == 2 * top.shape[-1]:
        blocks, cells = lateral.view(n, c, h // 2, 2, w // 2, 2), top[:, :, :, None, :, None]
        if lateral.requires_grad or top.requires_grad:
            return (blocks + cells).reshape(n, c, h, w)
        blocks.add_(cells)
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
            top = top_down(conv(feat), top)
            outs.append(top)
        return outs[::-1]
