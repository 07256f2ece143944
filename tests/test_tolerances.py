"""The bounds of tests/tolerances.py hold every score that logits within the tolerance can give, and no more."""
import pytest
import torch

from densechange.finetune.flips import flip_metrics
from densechange.finetune.inference.scoring import Scores
from tests.tolerances import assert_within, bin_moves, decision_ties, score_bounds


def logits_near_the_edges(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose differences crowd around 0 and around the bin edges of the histogram, and their labels."""
    g = torch.Generator().manual_seed(seed)
    label = (torch.rand(n, generator=g) < 0.3).long()
    diff = 0.02 * torch.randn(n, generator=g) + 0.01 * label  # probabilities near 0.5: many pixels per bin
    return torch.stack([torch.zeros(n), diff], 1), label


def scores(logits: torch.Tensor, label: torch.Tensor, clean: torch.Tensor | None = None) -> dict[str, float]:
    """The scores that validation and evaluate compute, with the flips against ``clean`` logits."""
    s = Scores()
    s.add(logits.argmax(1), logits.softmax(1)[:, 1], label, None)
    out = s.metrics()
    if clean is not None:
        flips = torch.zeros(2, 2, 2, dtype=torch.long)
        flips.index_put_((label, clean.argmax(1), logits.argmax(1)), torch.ones_like(label), accumulate=True)
        out.update(flip_metrics(flips))
    return out


@pytest.mark.numeric
def test_perturbations_within_the_tolerance_stay_within_the_bounds():
    logits, label = logits_near_the_edges(4000, 0)
    clean = logits + torch.tensor([0.0, 0.004])  # a nuisance variant: some decisions differ from the clean pair's
    atol = 2e-5
    assert decision_ties(logits, atol).sum() > 0 and bin_moves(logits.softmax(1)[:, 1], atol)[1].sum() > 10
    bounds = score_bounds(logits, label, atol, clean=clean)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):  # other paths: every logit moved by up to atol
        other = logits + atol * (2 * torch.rand(logits.shape, generator=g) - 1)
        other_clean = clean + atol * (2 * torch.rand(clean.shape, generator=g) - 1)
        assert_within(scores(other, label, other_clean), bounds)
    assert bounds["auroc"][0] < bounds["auroc"][1] and bounds["ap"][0] < bounds["ap"][1]


@pytest.mark.numeric
def test_without_ties_the_bounds_are_the_reference_scores():
    g = torch.Generator().manual_seed(2)
    label = (torch.rand(500, generator=g) < 0.3).long()
    p = (torch.randint(450, 560, (500,), generator=g) + 40 * label + 0.5).double() / 1000  # bin centres, never 0.5
    logits = torch.stack([torch.zeros(500), (p.log() - (-p).log1p()).float()], 1)
    bounds = score_bounds(logits, label, 1e-7)
    reference = scores(logits, label)
    assert all(lo == hi == pytest.approx(reference[k], abs=1e-12) for k, (lo, hi) in bounds.items())
    moved = logits.clone()
    moved[0, 1] = -moved[0, 1]  # one decision taken the other way: outside the bounds
    with pytest.raises(AssertionError, match="outside what the tied pixels allow"):
        assert_within(scores(moved, label), bounds)
