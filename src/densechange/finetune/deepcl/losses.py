"""DeepCL losses: the hard sample-aware contrastive loss (HSCL), Dice, and the total change loss.

Paper: Guo, Du, Wu, Han, Zhang, DeepCL, arXiv 2307.12208. Only the abstract is public: it names a
contrastive loss that reweights hard and easy samples and a distance prior that guides segmentation. The formulation below is this
toolkit's own reading of that abstract; its gamma=0 special case is the batch-balanced contrastive
loss of STANet (Chen & Shi, Remote Sensing 2020; code justchenhao/STANet).

Every pixel label uses 0 unchanged, 1 changed and ``IGNORE_INDEX`` for pixels left out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from densechange.datasets import IGNORE_INDEX
from densechange.engine.errors import ConfigError


def labels_to_grid(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring a change label to a coarser grid (the embedding resolution) by majority vote.

    A grid cell is changed when at least half of its valid pixels are changed, unchanged otherwise,
    and ignored when it holds no valid pixel. Ties go to "changed", the rarer class.

    Args:
        label: ``(B, H, W)`` long with values 0, 1 and ``IGNORE_INDEX``.
        size: ``(h, w)`` of the grid.
    Returns:
        ``(B, h, w)`` long.
    """
    if tuple(label.shape[-2:]) == tuple(size):
        return label
    valid = (label != IGNORE_INDEX).float().unsqueeze(1)
    changed = (label == 1).float().unsqueeze(1)
    frac_valid = F.adaptive_avg_pool2d(valid, size)
    frac_changed = F.adaptive_avg_pool2d(changed, size)
    grid = (2 * frac_changed >= frac_valid - 1e-6).long()
    return torch.where(frac_valid > 0, grid, torch.full_like(grid, IGNORE_INDEX)).squeeze(1)


def contrastive_terms(distance: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel contrastive losses ``(d^2, [m - d]_+^2)`` for unchanged and changed pixels."""
    return distance.pow(2), (margin - distance).clamp(min=0).pow(2)


@torch.no_grad()
def hardness_weights(distance: torch.Tensor, margin: float, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel weights ``(h_u^gamma, h_c^gamma)``, no gradient.

    Hardness is how far a pixel is from where the loss wants it: an unchanged pixel is hard when
    its embeddings are far apart, ``h_u = min(d / m, 1)``; a changed pixel is hard when they are
    close, ``h_c = [1 - d / m]_+``. ``gamma = 0`` gives every pixel weight 1 (``0^0 = 1``).
    """
    ratio = distance.detach().float() / margin
    return ratio.clamp(max=1.0).pow(gamma), (1.0 - ratio).clamp(min=0.0).pow(gamma)


def weighted_class_mean(loss: torch.Tensor, weight: torch.Tensor, member: torch.Tensor, eps: float) -> torch.Tensor:
    """``sum(w l) / max(sum(w), eps)`` over the pixels of one class; exactly 0 for an empty class."""
    w = weight * member.to(weight.dtype)
    return (w * loss).sum() / w.sum().clamp(min=eps)


def hscl_loss(
    distance: torch.Tensor, label: torch.Tensor, margin: float = 1.0, gamma: float = 2.0, eps: float = 1e-6
) -> torch.Tensor:
    """Hard sample-aware contrastive loss (functional form of :class:`HardSampleContrastiveLoss`).

    Args:
        distance: ``(B, 1, h, w)`` or ``(B, h, w)`` distances ``d = ||e1 - e2||``.
        label: ``(B, H, W)`` change label; brought to ``(h, w)`` with :func:`labels_to_grid`.
    Returns:
        Scalar ``L_unchanged + L_changed``.
    """
    d = distance.squeeze(1) if distance.dim() == 4 else distance
    d = d.float()
    grid = labels_to_grid(label, tuple(d.shape[-2:]))
    l_u, l_c = contrastive_terms(d, margin)
    w_u, w_c = hardness_weights(d, margin, gamma)
    return weighted_class_mean(l_u, w_u, grid == 0, eps) + weighted_class_mean(l_c, w_c, grid == 1, eps)


class HardSampleContrastiveLoss(nn.Module):
    """Hard sample-aware contrastive loss (HSCL) on a distance map between two dates' embeddings.

    Formulation of this toolkit (DeepCL, arXiv 2307.12208, publishes no formula). For every valid
    pixel ``i`` with distance ``d_i`` and label ``y_i`` at the embedding resolution::

        unchanged (y=0):  l_i = d_i^2           h_i = min(d_i / m, 1)
        changed   (y=1):  l_i = [m - d_i]_+^2   h_i = [1 - d_i / m]_+
        w_i = stopgrad(h_i)^gamma
        L_k = sum_{i in k} w_i l_i / max(sum_{i in k} w_i, eps)      (0 when class k has no pixel)
        L   = L_unchanged + L_changed

    Easy pixels (unchanged and already close, changed and already beyond the margin) get small
    weights, so the gradient concentrates on the hard ones. ``gamma = 0`` gives every pixel
    weight 1 and is the batch-balanced contrastive loss of STANet (which also multiplies by 1/2).

    Args:
        margin: ``m``, the distance beyond which a changed pixel costs nothing.
        gamma: focusing exponent; 0 turns hardness weighting off.
        eps: floor of the weight sum.

    Shapes:
        distance ``(B, 1, h, w)``; label ``(B, H, W)`` with 0, 1 and ``IGNORE_INDEX``; output scalar.

    Example:
        >>> loss = HardSampleContrastiveLoss(margin=1.0, gamma=2.0)
        >>> d = torch.rand(2, 1, 16, 16, requires_grad=True)
        >>> label = torch.randint(0, 2, (2, 64, 64))
        >>> loss(d, label).backward()
    """

    def __init__(self, margin: float = 1.0, gamma: float = 2.0, eps: float = 1e-6) -> None:
        super().__init__()
        if margin <= 0:
            raise ConfigError(f"model.hscl_margin must be > 0, got {margin}.")
        if gamma < 0:
            raise ConfigError(f"model.hscl_gamma must be >= 0, got {gamma}.")
        self.margin, self.gamma, self.eps = float(margin), float(gamma), float(eps)

    def forward(self, distance: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return hscl_loss(distance, label, self.margin, self.gamma, self.eps)


def masked_cross_entropy(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over valid pixels; 0 (in the graph) when every pixel is ignored.

    Args:
        logits: ``(B, K, H, W)``; label: ``(B, H, W)``.
    """
    total = F.cross_entropy(logits.float(), label, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (label != IGNORE_INDEX).sum().clamp(min=1)


def dice_loss(prob: torch.Tensor, label: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of the change probability over every valid pixel of the batch.

    ``1 - (2 sum p y + s) / (sum p + sum y + s)``, summed over the whole batch so that images
    without any change still contribute their false positives.

    Args:
        prob: ``(B, H, W)`` change probability; label: ``(B, H, W)``.
    """
    valid = (label != IGNORE_INDEX).to(prob.dtype)
    target = (label == 1).to(prob.dtype)
    p = prob * valid
    return 1 - (2 * (p * target).sum() + smooth) / (p.sum() + target.sum() + smooth)


class ChangeLoss(nn.Module):
    """DeepCL training objective ``CE + w_dice Dice + w_hscl HSCL``.

    Args:
        hscl: the contrastive loss on the distance map, or None for a detector without metric branch.
        dice_weight, hscl_weight: term weights (1 and 1 by default).

    Example:
        >>> loss = ChangeLoss(HardSampleContrastiveLoss())
        >>> out = loss(torch.randn(2, 2, 64, 64), torch.randint(0, 2, (2, 64, 64)), torch.rand(2, 1, 16, 16))
        >>> sorted(out)
        ['ce', 'dice', 'hscl', 'loss']
    """

    def __init__(self, hscl: HardSampleContrastiveLoss | None = None, dice_weight: float = 1.0, hscl_weight: float = 1.0) -> None:
        super().__init__()
        self.hscl = hscl
        self.dice_weight, self.hscl_weight = float(dice_weight), float(hscl_weight)

    def forward(self, logits: torch.Tensor, label: torch.Tensor, distance: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = logits.float()
        ce = masked_cross_entropy(logits, label)
        dice = dice_loss(logits.softmax(1)[:, 1], label)
        total = ce + self.dice_weight * dice
        out = {"ce": ce, "dice": dice}
        if self.hscl is not None and distance is not None:
            contrast = self.hscl(distance, label)
            total = total + self.hscl_weight * contrast
            out["hscl"] = contrast
        return {"loss": total, **out}
