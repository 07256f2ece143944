"""The FPN neck: the hand-computed top-down sum, and the fast top-down step against plain upsampling."""

import pytest
import torch
import torch.nn.functional as F

from densechange.models import FPN
from densechange.models.fpn import set_fast_top_down, top_down

pytestmark = pytest.mark.numeric  # fast against plain top-down forms, fp32


def test_fpn_matches_hand_computed_top_down_sum():
    fpn = FPN([1, 2], out_channels=1)
    with torch.no_grad():
        fpn.lateral[0].weight.fill_(1.0)  # fine level: identity
        fpn.lateral[0].bias.zero_()
        fpn.lateral[1].weight.copy_(torch.tensor([1.0, 10.0]).view(1, 2, 1, 1))
        fpn.lateral[1].bias.fill_(0.5)
    fine = torch.full((1, 1, 4, 4), 2.0)
    coarse = torch.zeros(1, 2, 2, 2)
    coarse[0, 0] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    coarse[0, 1, 0, 0] = 1.0
    p_fine, p_coarse = fpn([fine, coarse])
    expected_coarse = torch.tensor([[11.5, 2.5], [3.5, 4.5]])
    assert torch.equal(p_coarse[0, 0], expected_coarse)
    expected_fine = 2.0 + expected_coarse.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(p_fine[0, 0], expected_fine)


@pytest.mark.parametrize("fine", [(16, 12), (15, 13)])  # exactly twice the coarse level; and odd sizes (upsampled)
@pytest.mark.parametrize("channels_last", [False, True])
def test_top_down_step_equals_nearest_upsampling_then_addition(fine, channels_last):
    """The broadcast form adds the same floats as upsampling first (bit-exact, fp32), keeps the memory
    layout, and its gradients agree within fp32 rounding (the coarse cell sums its 2x2 block in another order)."""
    g = torch.Generator().manual_seed(0)
    lateral = torch.randn(2, 5, *fine, generator=g)
    top = torch.randn(2, 5, (fine[0] + 1) // 2, (fine[1] + 1) // 2, generator=g)
    if channels_last:
        lateral, top = (t.contiguous(memory_format=torch.channels_last) for t in (lateral, top))
    lateral.requires_grad_(), top.requires_grad_()
    got = top_down(lateral, top)
    want = lateral + F.interpolate(top, size=fine, mode="nearest")
    assert torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    grad = torch.randn(got.shape, generator=g)
    for x, y in zip(torch.autograd.grad(got, (lateral, top), grad), torch.autograd.grad(want, (lateral, top), grad)):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)
    with torch.no_grad():  # prediction: the sum goes into the lateral itself when it is twice the size
        fresh = lateral.detach().clone()
        got = top_down(fresh, top.detach())
        assert torch.equal(got, want.detach())
        assert (got.data_ptr() == fresh.data_ptr()) == (fine == (16, 12))


def test_fpn_rejects_wrong_number_of_levels():
    with pytest.raises(ValueError, match="built for 2 levels, got 1"):
        FPN([4, 8])([torch.zeros(1, 4, 2, 2)])


@pytest.mark.parametrize("size", [(64, 96), (60, 76)])  # multiples of the coarsest stride, and not
def test_fast_and_plain_top_down_forms_agree(size):
    """``set_fast_top_down(False)`` gives the upsampling form everywhere: the pyramid levels agree within fp32
    rounding with and without autograd (the same additions, so in practice exactly)."""
    torch.manual_seed(0)
    fpn = FPN([3, 4, 5], out_channels=6)
    feats = [torch.randn(2, c, size[0] // s, size[1] // s) for c, s in zip([3, 4, 5], [1, 2, 4])]
    try:
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                set_fast_top_down(True)
                fast = fpn(feats)
                set_fast_top_down(False)
                plain = fpn(feats)
            for x, y in zip(fast, plain):
                torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)
    finally:
        set_fast_top_down(True)
