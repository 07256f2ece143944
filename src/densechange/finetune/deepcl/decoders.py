"""Segmentation branches: how two dates' features become change features at stride 4.

Both decoders size themselves from the encoder's declared pyramid channels and take the distance
prior at every level they use (see :mod:`densechange.finetune.deepcl.prior`).

- :class:`PyramidDiffDecoder` (``model.name=deepcl``): per pyramid level, both dates' features and
  their absolute difference are fused by a 1x1 conv, then a top-down path (bilinear upsampling and
  addition) carries coarse context down to stride 4, where a 3x3 conv smooths the sum.
- :class:`DiffDecoder` (``model.name=siam_diff``): the plain siamese difference network, a 3x3 conv
  on ``|f1 - f2|`` of the finest level only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from densechange.finetune.deepcl.heads import ConvBNReLU
from densechange.finetune.deepcl.prior import apply_prior, check_prior, prior_channels, resize_distance


class PyramidDiffDecoder(nn.Module):
    """Multi-level difference decoder with a top-down path.

    Args:
        in_channels: channels of each pyramid level, finest first.
        channels: decoder width.
        prior: ``attention`` | ``concat`` | ``none``.
        ratios: each level's stride over the finest level's (the distance map's), when known.

    Shapes:
        two lists of ``(B, in_channels[i], h_i, w_i)`` and a distance ``(B, 1, h_0, w_0)`` or None
        -> ``(B, channels, h_0, w_0)``.
    """

    def __init__(self, in_channels: list[int], channels: int = 64, prior: str = "attention",
                 ratios: list[int] | None = None) -> None:
        super().__init__()
        self.prior = check_prior(prior)
        self.ratios = tuple(ratios) if ratios is not None else (None,) * len(in_channels)
        extra = prior_channels(prior)
        self.fuse = nn.ModuleList(ConvBNReLU(3 * c + extra, channels, 1) for c in in_channels)
        self.smooth = ConvBNReLU(channels, channels, 3)
        self.out_channels = channels

    def forward(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor], distance: torch.Tensor | None) -> torch.Tensor:
        level = self._fuse_split if not self.training and self.prior != "concat" else self._fuse_level
        fused = [level(fuse, fa, fb, distance, ratio)
                 for fuse, fa, fb, ratio in zip(self.fuse, feats_a, feats_b, self.ratios)]
        y = fused[-1]
        for finer in reversed(fused[:-1]):
            y = finer + F.interpolate(y, size=finer.shape[-2:], mode="bilinear", align_corners=False)
        return self.smooth(y)

    def _fuse_level(self, fuse: nn.Module, fa: torch.Tensor, fb: torch.Tensor, distance: torch.Tensor | None,
                    ratio: int | None) -> torch.Tensor:
        """``fuse(prior([fa, fb, |fa - fb|]))``, as trained."""
        return fuse(apply_prior(torch.cat([fa, fb, (fa - fb).abs()], 1), distance, self.prior, ratio))

    def _fuse_split(self, fuse: nn.Module, fa: torch.Tensor, fb: torch.Tensor, distance: torch.Tensor | None,
                    ratio: int | None) -> torch.Tensor:
        """:meth:`_fuse_level` without building the three-part input, for prediction.

        The fusing conv is 1x1 and the attention prior scales every channel of a pixel alike, so
        ``conv(s * [fa, fb, |fa - fb|]) = s * (W_a fa + W_b fb + W_d |fa - fb|) + bias``: the same
        values (up to rounding) without copying three times the level's channels, and with the
        prior's product on the conv's few output channels instead of its many inputs.
        """
        conv, *rest = list(fuse)
        w_a, w_b, w_d = conv.weight.chunk(3, 1)
        y = F.conv2d(fa, w_a)
        y += F.conv2d(fb, w_b)
        y += F.conv2d((fa - fb).abs_(), w_d)
        if self.prior == "attention" and distance is not None:
            y *= 1 + resize_distance(distance, tuple(y.shape[-2:]), ratio).to(y.dtype) / 2
        if conv.bias is not None:
            y += conv.bias.view(1, -1, 1, 1)
        for module in rest:  # batch norm (left unfolded: the conv module itself never runs here) and ReLU
            y = module(y)
        return y


class DiffDecoder(nn.Module):
    """Siamese difference baseline: ``ConvBNReLU3x3(prior(|f1 - f2|))`` at the finest level.

    Args:
        in_channels: channels of each pyramid level, finest first (only the first is used).
        channels: output width.
        prior: ``attention`` | ``concat`` | ``none``.
        ratios: accepted for the same signature as :class:`PyramidDiffDecoder`; the finest level needs none.
    """

    def __init__(self, in_channels: list[int], channels: int = 64, prior: str = "attention",
                 ratios: list[int] | None = None) -> None:
        super().__init__()
        self.prior = check_prior(prior)
        self.fuse = ConvBNReLU(in_channels[0] + prior_channels(prior), channels, 3)
        self.out_channels = channels

    def forward(self, feats_a: list[torch.Tensor], feats_b: list[torch.Tensor], distance: torch.Tensor | None) -> torch.Tensor:
        return self.fuse(apply_prior((feats_a[0] - feats_b[0]).abs(), distance, self.prior))


DECODERS = {"deepcl": PyramidDiffDecoder, "siam_diff": DiffDecoder}
