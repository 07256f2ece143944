"""Dense heads of the change detectors: thin variants of one per-pixel MLP block.

A ``ConvMLP`` is conv-BN-ReLU followed by a plain conv; the metric head is a 1x1 ``ConvMLP`` whose
output is L2-normalised per pixel, so that distances between dates live in ``[0, 2]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ChangeHeadSpec:
    """Widths of a change detector's heads (our defaults).

    Args:
        embed_dim: size of the metric branch's per-pixel embeddings.
        decoder_channels: width of the segmentation decoder.
        num_classes: change classes of the classifier (2: unchanged, changed).
    """

    embed_dim: int = 64
    decoder_channels: int = 64
    num_classes: int = 2


class ConvBNReLU(nn.Sequential):
    """``Conv(k x k, no bias) -> BatchNorm -> ReLU`` keeping the spatial size."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ConvMLP(nn.Sequential):
    """``ConvBNReLU(in -> hidden, k) -> Conv1x1(hidden -> out)``: the generic dense head."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, kernel_size: int = 1) -> None:
        super().__init__(ConvBNReLU(in_channels, hidden_channels, kernel_size), nn.Conv2d(hidden_channels, out_channels, 1))


class MetricHead(ConvMLP):
    """Per-pixel embedding head of the metric branch.

    Args:
        in_channels: channels of the stride-4 encoder features.
        embed_dim: embedding size, also the hidden width (the head runs on both dates at stride 4,
            so its width is what it costs).

    Shapes:
        ``(B, in_channels, h, w) -> (B, embed_dim, h, w)``, unit L2 norm along the channels.

    Example:
        >>> head = MetricHead(256, 64)
        >>> e = head(torch.randn(2, 256, 16, 16))
        >>> torch.allclose(e.norm(dim=1), torch.ones(2, 16, 16))
        True
    """

    def __init__(self, in_channels: int, embed_dim: int = 64) -> None:
        super().__init__(in_channels, embed_dim, embed_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x).float(), dim=1)


def embedding_distance(e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """Per-pixel Euclidean distance ``(B, 1, h, w)`` between two ``(B, E, h, w)`` embeddings."""
    return torch.linalg.vector_norm(e1 - e2, dim=1, keepdim=True)
