"""SaDL losses: cross-view consistency, semantic push and synthetic-view consistency.

Paper: Chen, Li, Chen, Shi, "Semantic-aware Dense Representation Learning for Remote Sensing
Image Change Detection" (IEEE TGRS 2022); reference code justchenhao/SaDL_CD.

Points are arranged ``(B, K, n, ...)``: image, class, point. ``valid (B, K)`` says whether the class
has pixels in the overlap; points of an absent class leave every term (the reference has no such
rule). Every term is a masked mean, and a term with nothing to average is exactly 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over entries with ``weight`` 1; 0 (still in the graph) when none."""
    weight = weight.to(values.dtype).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def neg_cosine(q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``D(q, z) = 2 - 2 cos(q, stopgrad(z))`` over the last dimension (SimSiam)."""
    return 2 - 2 * F.cosine_similarity(q, z.detach(), dim=-1)


def consistency_loss(q1: torch.Tensor, z1: torch.Tensor, q2: torch.Tensor, z2: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``L_cons = 1/2 [mean D(q1, z2) + mean D(q2, z1)]`` over valid classes and their points.

    Args:
        q1, z1, q2, z2: ``(B, K, n, E)`` predictions and projections of both views.
        valid: ``(B, K)`` bool.
    """
    w = valid[:, :, None]
    return 0.5 * (masked_mean(neg_cosine(q1, z2), w) + masked_mean(neg_cosine(q2, z1), w))


def push_loss(features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``L_push = 1/2 sum_views mean_n [1 + cos(x_i,n, x_j,n)]`` over every pair of present classes.

    With two classes this is the reference's background-foreground push; with K classes every
    pair ``i < j`` of classes present in the same image is pushed apart, point ``n`` of class ``i``
    against point ``n`` of class ``j``.

    Args:
        features: ``(V, B, K, n, D)`` encoder features of ``V`` views.
        valid: ``(B, K)`` bool.
    """
    k = features.shape[2]
    x = F.normalize(features, dim=-1)
    cos = torch.einsum("vbind,vbjnd->vbijn", x, x)  # (V, B, K, K, n)
    upper = torch.ones(k, k, dtype=torch.bool, device=valid.device).triu(1)
    pair = (valid[:, :, None] & valid[:, None, :] & upper)[None, :, :, :, None]  # (1, B, K, K, 1)
    return masked_mean(1 + cos, pair)


def synthetic_loss(q3: torch.Tensor, z1: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``L_syn = mean D(q3, z1)`` over foreground points (classes 1..K-1) of the synthetic view."""
    fg = valid.clone()
    fg[:, 0] = False
    return masked_mean(neg_cosine(q3, z1), fg[:, :, None])


class SaDLLoss(nn.Module):
    """Total SaDL objective ``L = w_cons L_cons + w_push L_push + w_syn L_syn`` (defaults 1, 1, 1/2).

    Example:
        >>> loss = SaDLLoss()
        >>> B, K, n = 2, 2, 4
        >>> x = torch.randn(3, B, K, n, 8); z = torch.randn(3, B, K, n, 16); q = torch.randn(3, B, K, n, 16)
        >>> out = loss(x, z, q, torch.ones(B, K, dtype=torch.bool))
        >>> sorted(out)
        ['cons', 'loss', 'push', 'syn']
    """

    def __init__(self, w_cons: float = 1.0, w_push: float = 1.0, w_syn: float = 0.5) -> None:
        super().__init__()
        self.w_cons, self.w_push, self.w_syn = w_cons, w_push, w_syn

    def forward(self, x: torch.Tensor, z: torch.Tensor, q: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: ``x`` features, ``z`` projections, ``q`` predictions, each ``(V, B, K, n, ·)`` with
        views 1, 2 and optionally the synthetic view 3; ``valid (B, K)``."""
        cons = consistency_loss(q[0], z[0], q[1], z[1], valid)
        push = push_loss(x[:2], valid)
        syn = synthetic_loss(q[2], z[0], valid) if x.shape[0] > 2 else cons.new_zeros(())
        total = self.w_cons * cons + self.w_push * push + self.w_syn * syn
        return {"loss": total, "cons": cons, "push": push, "syn": syn}
