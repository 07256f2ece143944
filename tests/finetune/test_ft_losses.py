"""DeepCL losses against values computed by hand and against a plain batch-balanced reference."""
import pytest
import torch

from densechange.datasets import IGNORE_INDEX
from densechange.finetune.deepcl.losses import (
    ChangeLoss,
    HardSampleContrastiveLoss,
    dice_loss,
    hardness_weights,
    hscl_loss,
    labels_to_grid,
    masked_cross_entropy,
)

pytestmark = pytest.mark.numeric  # losses against plain references, float32 kernels

IGN = IGNORE_INDEX


def batch_balanced_contrastive(d: torch.Tensor, label: torch.Tensor, margin: float) -> torch.Tensor:
    """STANet's BCL without its 1/2 factor: class-wise means of d^2 and [m - d]_+^2, summed."""
    d, label = d.flatten(), label.flatten()
    total = torch.zeros(())
    unchanged, changed = d[label == 0], d[label == 1]
    if unchanged.numel():
        total = total + (unchanged**2).sum() / unchanged.numel()
    if changed.numel():
        total = total + ((margin - changed).clamp(min=0) ** 2).sum() / changed.numel()
    return total


def test_hscl_hand_values():
    # unchanged d=0.2, 0.5; changed d=1.2 (beyond the margin), 0.8; one ignored pixel with a huge distance
    d = torch.tensor([0.2, 0.5, 1.2, 0.8, 1.9]).view(1, 1, 1, 5)
    label = torch.tensor([0, 0, 1, 1, IGN]).view(1, 1, 5)
    # unchanged: l = d^2 = (.04, .25), w = (d/m)^2 = (.04, .25) -> (.04*.04 + .25*.25) / .29
    l_unchanged = (0.04 * 0.04 + 0.25 * 0.25) / 0.29
    # changed: l = (1-d)_+^2 = (0, .04), w = (1-d)_+^2 = (0, .04) -> .04*.04 / .04
    l_changed = 0.04
    got = hscl_loss(d, label, margin=1.0, gamma=2.0)
    assert got.item() == pytest.approx(l_unchanged + l_changed, rel=1e-6)


def test_hscl_hand_values_other_margin_and_gamma():
    d = torch.tensor([0.5, 1.5, 0.5, 1.0]).view(1, 1, 1, 4)
    label = torch.tensor([0, 0, 1, 1]).view(1, 1, 4)
    m, g = 2.0, 1.0
    # unchanged: h = (.25, .75), l = (.25, 2.25); changed: h = (.75, .5), l = (2.25, 1.0)
    expected = (0.25 * 0.25 + 0.75 * 2.25) / 1.0 + (0.75 * 2.25 + 0.5 * 1.0) / 1.25
    assert hscl_loss(d, label, margin=m, gamma=g).item() == pytest.approx(expected, rel=1e-6)


def test_gamma_zero_is_batch_balanced_contrastive_loss():
    g = torch.Generator().manual_seed(0)
    d = torch.rand(3, 1, 8, 8, generator=g) * 2
    label = torch.randint(-1, 2, (3, 8, 8), generator=g)
    for margin in (0.5, 1.0, 2.0):
        got = HardSampleContrastiveLoss(margin=margin, gamma=0.0)(d, label)
        assert got.item() == pytest.approx(batch_balanced_contrastive(d, label, margin).item(), rel=1e-6)


def test_empty_class_adds_zero():
    d = torch.tensor([0.3, 0.6, 0.9]).view(1, 1, 1, 3)
    only_unchanged = torch.zeros(1, 1, 3, dtype=torch.long)
    only_changed = torch.ones(1, 1, 3, dtype=torch.long)
    w_u = d**2
    assert hscl_loss(d, only_unchanged).item() == pytest.approx(((w_u * d**2).sum() / w_u.sum()).item(), rel=1e-6)
    w_c = (1 - d) ** 2
    assert hscl_loss(d, only_changed).item() == pytest.approx(((w_c * (1 - d) ** 2).sum() / w_c.sum()).item(), rel=1e-6)
    everything_ignored = torch.full((1, 1, 3), IGN)
    assert hscl_loss(d, everything_ignored).item() == 0.0


def test_easy_pixels_weigh_less_than_hard_ones():
    d = torch.tensor([0.1, 0.5, 0.9, 1.5])
    w_u, w_c = hardness_weights(d, margin=1.0, gamma=2.0)
    assert torch.all(w_u[1:] >= w_u[:-1]) and w_u[0] < w_u[2]  # unchanged: far apart is hard
    assert torch.all(w_c[1:] <= w_c[:-1]) and w_c[2] < w_c[0]  # changed: close together is hard
    assert w_u[3] == 1.0 and w_c[3] == 0.0  # saturated beyond the margin
    # gradient: a hard unchanged pixel pulls harder than an easy one in the same batch
    x = torch.tensor([0.1, 0.9]).view(1, 1, 1, 2).requires_grad_()
    hscl_loss(x, torch.zeros(1, 1, 2, dtype=torch.long)).backward()
    assert abs(x.grad[0, 0, 0, 1]) > 10 * abs(x.grad[0, 0, 0, 0])


def test_weights_carry_no_gradient():
    d = torch.tensor([0.2, 0.6]).view(1, 1, 1, 2).requires_grad_()
    label = torch.tensor([[[0, 0]]])
    hscl_loss(d, label).backward()
    w = d.detach() ** 2  # weights, held constant
    expected = 2 * w * d.detach() / w.sum()  # d/dd of sum(w d^2)/sum(w)
    assert torch.allclose(d.grad, expected, atol=1e-6)


def test_labels_to_grid_majority_with_ignore():
    label = torch.tensor([
        [IGN, IGN, 1, 1],
        [IGN, IGN, 0, 0],
        [1, 0, 1, IGN],
        [0, 0, IGN, IGN],
    ]).view(1, 4, 4)
    grid = labels_to_grid(label, (2, 2))
    # all ignored -> ignored; 2 of 4 changed -> changed (tie); 1 of 4 -> unchanged; 1 of 1 valid -> changed
    assert grid.tolist() == [[[IGN, 1], [0, 1]]]


def test_hscl_brings_labels_to_the_distance_grid():
    d = torch.tensor([[0.5, 0.5], [0.5, 0.5]]).view(1, 1, 2, 2)
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[0, :4, :4] = 1  # top-left cell changed
    grid = torch.tensor([[1, 0], [0, 0]]).view(1, 2, 2)
    assert hscl_loss(d, label).item() == pytest.approx(hscl_loss(d, grid).item(), rel=1e-7)


def test_distance_gradient_is_finite_at_zero():
    from densechange.finetune.deepcl.heads import embedding_distance

    e = torch.zeros(1, 4, 2, 2, requires_grad=True)
    loss = hscl_loss(embedding_distance(e, torch.zeros(1, 4, 2, 2)), torch.tensor([[[0, 1], [1, 0]]]))
    loss.backward()
    assert torch.isfinite(e.grad).all()


def test_dice_and_cross_entropy_hand_values():
    prob = torch.tensor([0.5, 1.0, 0.0, 0.5]).view(1, 1, 4)
    label = torch.tensor([1, 1, 0, IGN]).view(1, 1, 4)
    # valid p = (.5, 1, 0), y = (1, 1, 0): 1 - (2 * 1.5 + 1) / (1.5 + 2 + 1)
    assert dice_loss(prob, label).item() == pytest.approx(1 - 4 / 4.5, rel=1e-6)
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 5.0]]).T.reshape(1, 2, 1, 3)
    label = torch.tensor([[[1, 0, IGN]]])
    lse = torch.log(1 + torch.exp(torch.tensor(-2.0)))
    expected = (torch.log(torch.tensor(2.0)) + lse) / 2
    assert masked_cross_entropy(logits, label).item() == pytest.approx(expected.item(), rel=1e-6)
    assert masked_cross_entropy(logits, torch.full((1, 1, 3), IGN)).item() == 0.0


def test_change_loss_sums_its_terms():
    g = torch.Generator().manual_seed(1)
    logits, d = torch.randn(2, 2, 16, 16, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    label = torch.randint(0, 2, (2, 16, 16), generator=g)
    out = ChangeLoss(HardSampleContrastiveLoss(), dice_weight=0.5, hscl_weight=2.0)(logits, label, d)
    assert out["loss"].item() == pytest.approx((out["ce"] + 0.5 * out["dice"] + 2.0 * out["hscl"]).item(), rel=1e-6)
    plain = ChangeLoss(None)(logits, label, None)
    assert set(plain) == {"loss", "ce", "dice"} and plain["loss"].item() == pytest.approx((plain["ce"] + plain["dice"]).item())


def test_bad_hyperparameters_are_named():
    with pytest.raises(ValueError, match="hscl_margin"):
        HardSampleContrastiveLoss(margin=0.0)
    with pytest.raises(ValueError, match="hscl_gamma"):
        HardSampleContrastiveLoss(gamma=-1.0)
