"""SaDL loss terms against values computed by hand."""
import math

import pytest
import torch

from densechange.pretrain.sadl.losses import SaDLLoss, consistency_loss, masked_mean, neg_cosine, push_loss, synthetic_loss

pytestmark = pytest.mark.numeric  # losses against hand values, float32 kernels


def pts(*vectors):
    """(B=1, K=len, n=1, E) from one vector per class."""
    return torch.tensor(vectors, dtype=torch.float32).view(1, len(vectors), 1, -1)


def test_neg_cosine_hand_values():
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [1.0, 1.0]])
    expected = torch.tensor([0.0, 2.0, 4.0, 2.0 - math.sqrt(2.0)])
    assert torch.allclose(neg_cosine(q, z), expected, atol=1e-6)


def test_identical_views_give_zero_consistency():
    z = torch.randn(2, 2, 5, 8)
    valid = torch.ones(2, 2, dtype=torch.bool)
    # perfect predictions of the other view: q1 = z2 = q2 = z1
    assert consistency_loss(z, z, z, z, valid).item() == pytest.approx(0.0, abs=1e-6)


def test_consistency_hand_case():
    # class 0: q1 . z2 orthogonal (D=2), q2 = z1 (D=0); class 1: q1 = -z2 (D=4), q2 at 45 degrees of z1
    q1, z2 = pts([1, 0], [1, 0]), pts([0, 1], [-1, 0])
    q2, z1 = pts([1, 0], [1, 0]), pts([1, 0], [1, 1])
    valid = torch.ones(1, 2, dtype=torch.bool)
    expected = 0.5 * ((2 + 4) / 2 + (0 + (2 - math.sqrt(2))) / 2)
    assert consistency_loss(q1, z1, q2, z2, valid).item() == pytest.approx(expected, abs=1e-6)
    # class 1 absent: only class 0 remains
    valid[0, 1] = False
    assert consistency_loss(q1, z1, q2, z2, valid).item() == pytest.approx(0.5 * (2 + 0), abs=1e-6)


def test_stop_gradient_on_targets():
    q = torch.randn(1, 2, 3, 4, requires_grad=True)
    z = torch.randn(1, 2, 3, 4, requires_grad=True)
    consistency_loss(q, z, q, z, torch.ones(1, 2, dtype=torch.bool)).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert z.grad is None


def test_orthogonal_background_foreground_push_is_one():
    x = pts([1, 0, 0], [0, 5, 0]).expand(2, 1, 2, 1, 3)  # two views
    assert push_loss(x, torch.ones(1, 2, dtype=torch.bool)).item() == pytest.approx(1.0, abs=1e-6)


def test_push_hand_values_per_view():
    # view 1: identical (1 + 1 = 2), view 2: opposite (1 - 1 = 0) -> 1/2 (2 + 0) = 1
    v1 = pts([1, 1], [2, 2])
    v2 = pts([1, 0], [-1, 0])
    x = torch.stack([v1, v2])
    assert push_loss(x, torch.ones(1, 2, dtype=torch.bool)).item() == pytest.approx(1.0, abs=1e-6)
    # 60 degrees apart in both views: 1 + 0.5
    v = pts([1, 0], [0.5, math.sqrt(3) / 2])
    assert push_loss(torch.stack([v, v]), torch.ones(1, 2, dtype=torch.bool)).item() == pytest.approx(1.5, abs=1e-6)


def test_push_every_pair_of_k_classes():
    # three classes, pairs (0,1): cos 0, (0,2): cos 1, (1,2): cos 0 -> mean(1, 2, 1) = 4/3
    v = pts([1, 0], [0, 1], [2, 0])
    x = torch.stack([v, v])
    valid = torch.ones(1, 3, dtype=torch.bool)
    assert push_loss(x, valid).item() == pytest.approx(4 / 3, abs=1e-6)
    valid[0, 2] = False  # class 2 absent: only pair (0, 1)
    assert push_loss(x, valid).item() == pytest.approx(1.0, abs=1e-6)


def test_absent_class_contributes_nothing():
    x = torch.randn(3, 2, 2, 4, 6)
    z = torch.randn(3, 2, 2, 4, 8)
    q = torch.randn(3, 2, 2, 4, 8)
    valid = torch.tensor([[True, False], [True, False]])
    out = SaDLLoss()(x, z, q, valid)
    assert out["push"].item() == 0.0  # no image has both classes
    assert out["syn"].item() == 0.0  # no foreground points
    # changing the absent class's values changes nothing
    x2, z2, q2 = x.clone(), z.clone(), q.clone()
    x2[:, :, 1] += 10
    z2[:, :, 1] *= -3
    q2[:, :, 1] = torch.randn_like(q2[:, :, 1])
    out2 = SaDLLoss()(x2, z2, q2, valid)
    for k in out:
        assert out[k].item() == pytest.approx(out2[k].item(), abs=1e-6)


def test_synthetic_term_uses_foreground_only():
    q3 = pts([1, 0], [0, 1])
    z1 = pts([-1, 0], [1, 0])  # background D=4 (ignored), foreground D=2
    assert synthetic_loss(q3, z1, torch.ones(1, 2, dtype=torch.bool)).item() == pytest.approx(2.0, abs=1e-6)


def test_total_is_weighted_sum():
    x, z, q = torch.randn(3, 2, 2, 4, 6), torch.randn(3, 2, 2, 4, 8), torch.randn(3, 2, 2, 4, 8)
    out = SaDLLoss()(x, z, q, torch.ones(2, 2, dtype=torch.bool))
    assert out["loss"].item() == pytest.approx((out["cons"] + out["push"] + 0.5 * out["syn"]).item(), abs=1e-6)


def test_masked_mean_empty_is_zero_and_differentiable():
    v = torch.randn(4, requires_grad=True)
    m = masked_mean(v, torch.zeros(4))
    m.backward()
    assert m.item() == 0.0 and torch.equal(v.grad, torch.zeros(4))
