"""Batched photometric ops against torchvision's per-image reference implementations."""
import pytest
import torch
import torchvision.transforms.functional as TF

from densechange.datasets.transforms.photometric import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    gaussian_blur,
)

pytestmark = pytest.mark.numeric  # batched ops against torchvision's, fp32


@pytest.fixture
def batch():
    return torch.rand(4, 3, 12, 10, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "ours, ref, factors",
    [
        (adjust_brightness, TF.adjust_brightness, [0.6, 1.0, 1.3, 0.9]),
        (adjust_contrast, TF.adjust_contrast, [0.6, 1.0, 1.4, 0.8]),
        (adjust_saturation, TF.adjust_saturation, [0.6, 1.0, 1.4, 0.0]),
        (adjust_hue, TF.adjust_hue, [-0.1, 0.0, 0.05, 0.5]),
    ],
)
def test_matches_torchvision_per_image(batch, ours, ref, factors):
    out = ours(batch, torch.tensor(factors))
    expected = torch.stack([ref(img, f) for img, f in zip(batch, factors)])
    assert torch.allclose(out, expected, atol=2e-3)


def test_blur_matches_torchvision(batch):
    g = torch.Generator().manual_seed(3)
    out = gaussian_blur(batch, (0.1, 2.0), p=1.0, generator=g)
    g = torch.Generator().manual_seed(3)
    torch.rand(4, generator=g)  # the apply draws
    sig = torch.rand(4, generator=g) * 1.9 + 0.1
    expected = torch.stack([TF.gaussian_blur(img, [3, 3], [float(s)] * 2) for img, s in zip(batch, sig)])
    assert torch.allclose(out, expected, atol=1e-5)


def test_probability_zero_is_identity_and_seeded(batch):
    assert torch.equal(color_jitter(batch, p=0.0, generator=torch.Generator().manual_seed(0)), batch)
    assert torch.equal(gaussian_blur(batch, p=0.0, generator=torch.Generator().manual_seed(0)), batch)
    a = color_jitter(batch, generator=torch.Generator().manual_seed(7))
    b = color_jitter(batch, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1


def test_multiband_gets_brightness_and_contrast_only():
    x = torch.rand(2, 6, 8, 8)
    y = color_jitter(x, 0.0, 0.0, 0.9, 0.4, p=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x, y, atol=1e-6)  # saturation and hue do not apply to 6 bands
