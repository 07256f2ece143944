"""Batched photometric augmentation on the training device.

Both stages need the same colour operations: pretraining distorts each view (SaDL), finetuning
changes each date independently so that the detector learns to ignore pseudo-changes. Every op
takes a batch ``(B, C, H, W)`` of values in ``[0, 1]`` and draws one set of parameters per sample,
so a whole batch is augmented with a handful of tensor ops and no Python loop over images.

Random parameters are drawn on the CPU from an explicit ``torch.Generator`` and then moved to the
batch's device: the draws are then identical on CPU and GPU and reproducible from a seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "draws_to_device",
    "uniform",
    "bernoulli",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "color_jitter",
    "gaussian_blur",
    "rgb_to_gray",
]

_GRAY = (0.299, 0.587, 0.114)


def draws_to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move CPU-drawn parameters to ``device`` without blocking the host on CUDA (pinned, async copy)."""
    device = torch.device(device)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def uniform(n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` draws from U(low, high), drawn on the CPU for device-independent reproducibility."""
    return draws_to_device(torch.rand(n, generator=generator) * (high - low) + low, device)


def bernoulli(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` boolean draws that are True with probability ``p``."""
    return draws_to_device(torch.rand(n, generator=generator) < p, device)


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB batch ``(B, 3, H, W)`` -> ``(B, 1, H, W)``; other band counts use the band mean."""
    if x.shape[1] == 3:
        w = x.new_tensor(_GRAY).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x.mean(1, keepdim=True)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale intensities by a per-sample factor ``(B,)``."""
    return (x * _per_sample(factor)).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean grey level by a per-sample factor ``(B,)``."""
    mean = rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return (mean + (x - mean) * _per_sample(factor)).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each RGB image with its grey version; a no-op for non-RGB band counts."""
    if x.shape[1] != 3:
        return x
    gray = rgb_to_gray(x)
    return (gray + (x - gray) * _per_sample(factor)).clamp(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, argmax = x.max(1)
    minc = x.min(1).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h_r = ((g - b) / safe) % 6
    h_g = (b - r) / safe + 2
    h_b = (r - g) / safe + 4
    h = torch.stack([h_r, h_g, h_b], 1).gather(1, argmax.unsqueeze(1)).squeeze(1) / 6
    h = torch.where(delta > 0, h, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    k = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    kk = (k + h.unsqueeze(1) * 6) % 6
    return v.unsqueeze(1) - v.unsqueeze(1) * s.unsqueeze(1) * torch.clamp(torch.minimum(kk, 4 - kk), 0, 1)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each RGB image by a per-sample fraction of a turn ``(B,)`` in [-0.5, 0.5]."""
    if x.shape[1] != 3:
        return x
    hsv = _rgb_to_hsv(x)
    h = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return _hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1)).clamp(0, 1)


def color_jitter(
    x: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Colour jitter with torchvision's parameter ranges, applied to a random subset of the batch.

    Each selected sample gets brightness, contrast, saturation and hue factors drawn from
    ``[1-b, 1+b]``, ``[1-c, 1+c]``, ``[1-s, 1+s]`` and ``[-h, h]``, applied in that fixed order.
    Saturation and hue only apply to 3-band images; other band counts get brightness and contrast.

    Args:
        x: ``(B, C, H, W)`` values in ``[0, 1]``.
    Returns:
        A new ``(B, C, H, W)`` tensor.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = color_jitter(torch.rand(4, 3, 8, 8), generator=g)
    """
    n, dev = x.shape[0], x.device
    apply = _per_sample(bernoulli(n, p, generator, dev))
    b = uniform(n, max(0.0, 1 - brightness), 1 + brightness, generator, dev)
    c = uniform(n, max(0.0, 1 - contrast), 1 + contrast, generator, dev)
    s = uniform(n, max(0.0, 1 - saturation), 1 + saturation, generator, dev)
    h = uniform(n, -hue, hue, generator, dev)
    y = adjust_contrast(adjust_brightness(x, b), c)
    if x.shape[1] == 3:
        y = adjust_hue(adjust_saturation(y, s), h) if hue > 0 else adjust_saturation(y, s)
    return torch.where(apply, y, x)


def gaussian_blur(
    x: torch.Tensor,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
    kernel_size: int = 3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma, applied to a random subset of the batch.

    The per-sample kernels run as one grouped convolution over ``B * C`` channels.

    Args:
        x: ``(B, C, H, W)``.
        sigma: range of the standard deviation, in pixels.
    """
    n, ch, hgt, wid = x.shape
    dev = x.device
    apply = _per_sample(bernoulli(n, p, generator, dev))
    sig = uniform(n, sigma[0], sigma[1], generator, dev).to(x.dtype)
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, device=dev, dtype=x.dtype)
    k = torch.exp(-(t.view(1, -1) ** 2) / (2 * sig.view(-1, 1) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # (B*C, k)
    flat = x.reshape(1, n * ch, hgt, wid)
    flat = F.pad(flat, (r, r, r, r), mode="reflect")
    flat = F.conv2d(flat, k.view(n * ch, 1, 1, kernel_size), groups=n * ch)
    flat = F.conv2d(flat, k.view(n * ch, 1, kernel_size, 1), groups=n * ch)
    return torch.where(apply, flat.view(n, ch, hgt, wid), x)
