"""A simple feature pyramid: strides 4, 8, 16 and 32 from a plain ViT's single stride-16 map.

Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet), ECCV 2022:
a plain ViT keeps one resolution, and a few layers on its last map give the multi-scale levels
that the FPN and SaDL's stride-4 point sampling need. Stride 8 is one 2x2 transposed convolution,
stride 4 two (with a norm and GELU between), stride 16 the map itself and stride 32 a 2x2 max
pool. Channels follow ViTDet: C/4, C/2, C, C. These layers are new weights: a pretrained ViT
brings its blocks, and the pyramid learns from the first step on (pretraining trains it with the
encoder; finetuning from a ViT checkpoint without it starts it fresh).

Example:
    >>> pyramid = SimplePyramid(384, 16, "vit_small_patch16_224")
    >>> [t.shape[-1] for t in pyramid(torch.randn(1, 384, 16, 16))]
    [64, 32, 16, 8]
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from densechange.models.errors import ModelError

SOURCE_STRIDE = 16


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map (ViTDet's norm between the deconvolutions)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SimplePyramid(nn.Module):
    """Four levels, finest first, from one ``(B, C, H/16, W/16)`` map.

    Args:
        channels: the map's channels ``C``.
        stride: the map's stride; 16 (a patch-16 ViT) is the one the pyramid is built for.
        backbone: the backbone's name, for the error message.
    """

    def __init__(self, channels: int, stride: int, backbone: str = "the backbone") -> None:
        super().__init__()
        if stride != SOURCE_STRIDE or channels % 4:
            raise ModelError(
                f"{backbone} gives one feature map at stride {stride} with {channels} channels; the simple pyramid is "
                f"built from a stride-{SOURCE_STRIDE} map whose channels divide by 4 (patch-16 ViTs). Pick a patch-16 "
                "ViT, or a backbone with levels at strides 4..32")
        c = channels
        self.up4 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, stride=2), ChannelNorm(c // 2), nn.GELU(),
                                 nn.ConvTranspose2d(c // 2, c // 4, 2, stride=2))
        self.up8 = nn.ConvTranspose2d(c, c // 2, 2, stride=2)
        self.down32 = nn.MaxPool2d(2, ceil_mode=True)
        self.channels = [c // 4, c // 2, c, c]
        self.strides = [stride // 4, stride // 2, stride, stride * 2]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.up4(x), self.up8(x), x, self.down32(x)]

    def metadata(self) -> dict[str, Any]:
        return {"type": "simple", "source_stride": self.strides[2], "channels": list(self.channels)}
