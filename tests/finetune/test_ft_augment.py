"""Pseudo-change augmentation (training) and nuisance changes (evaluation)."""
import torch

from densechange.finetune.deepcl.pseudo_change import PseudoChangeAugment, _nonzero_shifts, date_swap, nuisance_changes, shift_image


def batch(n=6, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g), torch.rand(n, 3, size, size, generator=g)


def test_date_swap_exchanges_whole_pairs():
    a, b = batch()
    sa, sb = date_swap(a, b, 1.0)
    assert torch.equal(sa, b) and torch.equal(sb, a)
    sa, sb = date_swap(a, b, 0.0)
    assert sa is a and sb is b
    a, b = batch(n=64, size=4)
    sa, sb = date_swap(a, b, 0.5, torch.Generator().manual_seed(3))
    swapped = [torch.equal(sa[i], b[i]) for i in range(len(a))]
    for i, s in enumerate(swapped):
        assert torch.equal(sa[i], b[i] if s else a[i]) and torch.equal(sb[i], a[i] if s else b[i])
    assert 16 < sum(swapped) < 48  # about half of the pairs


def test_photometry_is_independent_per_date_and_seeded():
    a, _ = batch()
    aug = PseudoChangeAugment(jitter_p=1.0, blur_p=0.0, swap_p=0.0)
    x1, y1 = aug(a, a.clone(), torch.Generator().manual_seed(0))
    x2, y2 = aug(a, a.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.allclose(x1, y1)  # the same scene gets two different looks
    assert x1.min() >= 0 and x1.max() <= 1
    off = PseudoChangeAugment(photometric=False, swap_p=0.0)
    x, y = off(a, a, torch.Generator().manual_seed(0))
    assert torch.equal(x, a) and torch.equal(y, a)


def test_shift_image_translates_and_repeats_the_border():
    x = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).view(2, 1, 5, 6)
    out = shift_image(x, torch.tensor([1, -2]), torch.tensor([2, 0]), max_shift=2)
    # image 0 moves down 1 and right 2: out[y, x] = in[y - 1, x - 2] inside, border rows/cols repeated
    assert torch.equal(out[0, 0, 1:, 2:], x[0, 0, :-1, :-2])
    assert torch.equal(out[0, 0, 0, 2:], x[0, 0, 0, :-2])
    assert torch.equal(out[0, 0, 1:, 0], x[0, 0, :-1, 0])
    # image 1 moves up 2
    assert torch.equal(out[1, 0, :-2], x[1, 0, 2:])
    assert torch.equal(out[1, 0, -1], x[1, 0, -1])


def test_nuisance_changes_are_seeded_and_visible():
    _, b = batch(n=1, size=48)
    b = b[0]
    n1 = nuisance_changes(b, torch.Generator().manual_seed(7))
    n2 = nuisance_changes(b, torch.Generator().manual_seed(7))
    n3 = nuisance_changes(b, torch.Generator().manual_seed(8))
    assert n1.shape == b.shape and torch.equal(n1, n2) and not torch.equal(n1, n3)
    assert n1.min() >= 0 and n1.max() <= 1 and (n1 - b).abs().mean() > 0.01


def test_every_nuisance_shift_moves_the_image():
    dy, dx = _nonzero_shifts(500, 2, torch.Generator().manual_seed(0))
    assert ((dy != 0) | (dx != 0)).all()
    assert dy.abs().max() == 2 and dx.abs().max() == 2
    assert set(dy.tolist()) == {-2, -1, 0, 1, 2}
