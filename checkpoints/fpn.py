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
            lateral = conv(feat)
            # `size=` rather than scale_factor=2 keeps odd input sizes (e.g. 75 -> 38 -> 19) aligned.
            top = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            outs.append(top)
        return outs[::-1]
