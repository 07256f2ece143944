"""Threshold-free scores of the change probability: AUROC and average precision from histograms.

A detector that only moves its calling rate (more or fewer pixels above 0.5) keeps its ranking of
pixels, so its AUROC and AP stay put while F1 and the false-positive rate move: these two tell
"calls less change" apart from "separates change better".

Storing every pixel's probability does not scale to whole scenes, so the probabilities are counted
in ``bins`` equal bins per label class (int64, summed over batches and processes like the
confusion matrix, so the result does not depend on batching or the number of processes).

Precision: the scores treat the probabilities that fall in one bin (width ``1 / bins``) as tied.
They are exact when no bin holds two different probabilities (e.g. probabilities on the bin grid);
otherwise AUROC differs from the exact value by at most :func:`auroc_tie_bound` (half the share of
changed/unchanged pixel pairs that share a bin), and AP by the precision change within one bin;
with the default 1000 bins both stayed within 2e-3 of the exact values on continuous scores in
``tests/engine/test_engine_ranking.py``.

Example:
    >>> h = ProbabilityHistogram()
    >>> h.update(prob, label)             # (B, H, W) each; IGNORE_INDEX pixels are skipped
    >>> auroc, ap = ranking_scores(h.all_reduce().counts)
"""
from __future__ import annotations

import math

import torch

from densechange.datasets import IGNORE_INDEX
from densechange.engine.distributed import all_reduce_sum

DEFAULT_BINS = 1000


class ProbabilityHistogram:
    """Counts ``(2, bins)`` of the change probability: row 0 unchanged pixels, row 1 changed ones."""

    def __init__(self, bins: int = DEFAULT_BINS, device: str | torch.device = "cpu") -> None:
        self.bins = bins
        self.counts = torch.zeros(2, bins, dtype=torch.int64, device=device)

    def update(self, prob: torch.Tensor, label: torch.Tensor) -> None:
        """Add the pixels of ``prob`` (change probability in ``[0, 1]``) and ``label`` (0/1, ignore value skipped)."""
        if prob.shape != label.shape:
            raise ValueError(f"probability {tuple(prob.shape)} and label {tuple(label.shape)} differ in shape")
        valid = label != IGNORE_INDEX
        p = prob[valid].to(self.counts.device).float()
        index = (p * self.bins).long().clamp_(0, self.bins - 1)
        index += label[valid].to(self.counts.device).long() * self.bins
        self.counts += torch.bincount(index, minlength=2 * self.bins).view(2, self.bins)

    def all_reduce(self, device: str | torch.device | None = None) -> "ProbabilityHistogram":
        """A new histogram of the counts summed over every process; this process's counts stay."""
        reduced = ProbabilityHistogram(self.bins, device=self.counts.device)
        reduced.counts = all_reduce_sum(self.counts.to(device or self.counts.device, copy=True)).to(self.counts.device)
        return reduced


def _top_down(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unchanged and changed counts per bin, highest probability first, float64."""
    c = counts.double().cpu().flip(1)
    return c[0], c[1]


def ranking_scores(counts: torch.Tensor) -> tuple[float, float]:
    """``(auroc, ap)`` of the change class from a ``(2, bins)`` histogram; nan when a class has no pixel.

    AUROC is the chance that a changed pixel gets a higher probability than an unchanged one (ties
    count one half). AP is the area under the precision-recall steps, one step per non-empty bin
    from the top: ``sum_k (R_k - R_{k-1}) P_k`` (the definition of scikit-learn's
    ``average_precision_score``).
    """
    neg, pos = _top_down(counts)
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan, math.nan
    neg_below = n_neg - neg.cumsum(0)  # unchanged pixels in lower bins
    auroc = float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))
    tp, fp = pos.cumsum(0), neg.cumsum(0)
    precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp(min=1), torch.zeros_like(tp))
    ap = float((pos / n_pos * precision).sum())
    return auroc, ap


def auroc_tie_bound(counts: torch.Tensor) -> float:
    """Largest possible gap between the histogram's AUROC and the exact one: half the cross-class pairs sharing a bin."""
    neg, pos = _top_down(counts)
    total = float(pos.sum() * neg.sum())
    return float(0.5 * (pos * neg).sum() / total) if total > 0 else math.nan
