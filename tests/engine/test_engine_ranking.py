"""AUROC and AP from probability histograms, against an exact computation over every pixel."""
import math

import numpy as np
import pytest
import torch

from densechange.datasets import IGNORE_INDEX
from densechange.engine.ranking import ProbabilityHistogram, auroc_tie_bound, ranking_scores

pytestmark = pytest.mark.numeric  # AUROC/AP from float32 probabilities against exact ones


def exact_scores(prob: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """AUROC by pair counting (ties one half) and AP as sum over distinct thresholds of (R_k - R_k-1) P_k."""
    pos, neg = prob[label == 1], prob[label == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    auroc = greater / (len(pos) * len(neg))
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(prob)[::-1]:
        called = prob >= t
        tp = (called & (label == 1)).sum()
        recall, precision = tp / len(pos), tp / called.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return float(auroc), float(ap)


def _data(n: int, seed: int, grid: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    label = (torch.rand(n, generator=g) < 0.3).long()
    prob = (torch.rand(n, generator=g) * 0.7 + 0.3 * label).clamp(0, 1)  # changed pixels score higher on average
    if grid is not None:  # probabilities at bin centres: no two different values share a bin
        prob = ((prob * grid).floor().clamp(max=grid - 1) + 0.5) / grid
    return prob, label


def test_exact_when_probabilities_sit_on_the_bin_grid():
    prob, label = _data(600, 0, grid=50)  # many ties, all within a bin
    h = ProbabilityHistogram(bins=50)
    h.update(prob.view(2, 300), label.view(2, 300))
    auroc, ap = ranking_scores(h.counts)
    ref_auroc, ref_ap = exact_scores(prob.double().numpy(), label.numpy())
    assert auroc == pytest.approx(ref_auroc, abs=1e-12) and ap == pytest.approx(ref_ap, abs=1e-12)
    assert 0.5 < auroc < 1 and ap > label.float().mean()  # better than chance


def test_continuous_probabilities_are_within_the_stated_precision():
    prob, label = _data(3000, 1)
    h = ProbabilityHistogram()  # 1000 bins
    for part in range(3):  # batches add up
        h.update(prob[part * 1000:(part + 1) * 1000], label[part * 1000:(part + 1) * 1000])
    auroc, ap = ranking_scores(h.counts)
    ref_auroc, ref_ap = exact_scores(prob.double().numpy(), label.numpy())
    bound = auroc_tie_bound(h.counts)
    assert 0 < bound < 2e-3
    assert abs(auroc - ref_auroc) <= bound and abs(ap - ref_ap) < 2e-3


def test_ignored_pixels_left_out_and_one_class_gives_nan():
    h = ProbabilityHistogram(bins=10)
    h.update(torch.tensor([[0.05, 0.95, 0.55, 1.0]]), torch.tensor([[0, 1, IGNORE_INDEX, 1]]))
    assert h.counts.sum() == 3 and h.counts[1, 9] == 2 and h.counts[0, 0] == 1  # p = 1 lands in the top bin
    assert ranking_scores(h.counts) == (1.0, 1.0)
    only = ProbabilityHistogram(bins=10)
    only.update(torch.tensor([0.2, 0.3]), torch.tensor([0, 0]))
    assert all(math.isnan(v) for v in ranking_scores(only.counts))


def test_a_constant_score_is_chance():
    h = ProbabilityHistogram(bins=10)
    h.update(torch.full((8,), 0.4), torch.tensor([0, 0, 0, 1, 0, 1, 0, 0]))
    auroc, ap = ranking_scores(h.counts)
    assert auroc == 0.5 and ap == pytest.approx(2 / 8)  # AP of a constant score is the change share
