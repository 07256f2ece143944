"""What the step benchmarks share: paired timing, model FLOPs, the encoder bound and GPU peaks.

A step's speed means little alone on a shared machine, so every benchmark states it as a ratio
against a bound measured in the same run: the *encoder bound* is the timm backbone and the FPN
neck alone, forward + backward + SGD, on the same views, in the same precision and memory format,
with no augmentation, sampling, heads or loss. The step and the bound are timed alternately,
step after step, so that both see the same noise; the ratio is the median of the per-pair ratios.

FLOPs are counted with ``torch.utils.flop_counter`` (matrix products and convolutions, forward and
backward); on CUDA the achieved rate is compared with the device's dense bf16 peak.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.models import Encoder  # noqa: E402
from densechange.engine.precision import PRECISIONS, autocast_for, device_name  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, in FLOP/s. The first key
# that occurs as whole words in torch.cuda.get_device_name() wins, so specific names come first.
DENSE_BF16_PEAK: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A10", 125e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
]


def step_arguments(description: str) -> argparse.ArgumentParser:
    """The options every step benchmark shares: batch, size, steps, device, precision, memory format, compile."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="compile the step like trainer.compile=true (the bound stays eager)")
    p.add_argument("--backbone", default="resnet18")
    return p


def dense_bf16_peak(name: str) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU by its name, or None when the table does not know it."""
    return next((peak for key, peak in DENSE_BF16_PEAK if re.search(rf"(?<!\w){re.escape(key)}(?!\w)", name)), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def count_flops(fn: Callable[[], object]) -> int:
    """Model FLOPs of one call (matrix products and convolutions, forward and backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@dataclass
class Paired:
    """Per-pair step and bound times of one run."""

    step: list[float]
    bound: list[float]

    @property
    def ratio(self) -> float:
        """Median over pairs of bound time / step time: the step's speed as a fraction of the bound's."""
        return statistics.median(b / s for s, b in zip(self.step, self.bound))


def paired_times(step: Callable[[int], object], bound: Callable[[], object], steps: int, device: torch.device) -> Paired:
    """Time ``step(i)`` and ``bound()`` alternately, ``steps`` times each."""
    out = Paired([], [])
    for i in range(steps):
        out.step.append(timed(lambda: step(i), device))
        out.bound.append(timed(bound, device))
    return out


def encoder_bound(backbone: str, neck_channels: int, views: torch.Tensor, precision: str, lr: float = 0.01) -> Callable[[], None]:
    """One forward + backward + SGD step of a bare encoder (timm backbone + FPN) on ``views``.

    The encoder is freshly built on the views' device, in their memory format; its loss is the mean
    of the finest pyramid level, so the backward runs through every lateral of the neck.
    """
    device = views.device
    encoder = Encoder(backbone, in_chans=views.shape[1], neck_channels=neck_channels, out_indices=None).to(device)
    if views.is_contiguous(memory_format=torch.channels_last):
        encoder = encoder.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(encoder.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        with autocast_for(device, precision):
            loss = encoder(views).float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def describe_device(device: torch.device) -> str:
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    return f"{device_name(device)}{threads}"


def rate_line(label: str, times: list[float], items: int, unit: str, flops: int) -> str:
    """``label: median s/step, items/s, model FLOPs per step and achieved FLOP/s``."""
    median = statistics.median(times)
    return (f"{label}: median {median:.3f} s/step (min {min(times):.3f}, max {max(times):.3f}), "
            f"{items / median:.3f} {unit}/s, {flops / 1e9:.1f} GFLOP/step, {flops / median / 1e9:.1f} GFLOP/s")


def peak_line(device: torch.device, flops: int, times: list[float]) -> str | None:
    """On CUDA: the achieved fraction of the device's dense bf16 peak ("unknown peak" off the table)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peak = dense_bf16_peak(name)
    achieved = flops / statistics.median(times)
    if peak is None:
        return f"{name}: {achieved / 1e12:.1f} TFLOP/s, unknown peak"
    return f"{name}: {achieved / 1e12:.1f} TFLOP/s = {100 * achieved / peak:.1f}% of its dense bf16 peak ({peak / 1e12:.0f} TFLOP/s)"


def warm_then_time(step: Callable[[int], object], bound: Callable[[], object], warmup: int, steps: int,
                   device: torch.device) -> tuple[Paired, float]:
    """``warmup`` untimed step + bound pairs (compilation happens there), then :func:`paired_times`.

    Returns the paired times and the seconds the warm-up took.
    """
    start = time.perf_counter()
    for i in range(warmup):
        step(i)
        bound()
    warm = time.perf_counter() - start
    return paired_times(lambda i: step(warmup + i), bound, steps, device), warm


def report(device: torch.device, name: str, unit: str, batch: int, flops: tuple[int, int], times: Paired,
           compiled: bool, reference: str = "encoder bound") -> str:
    """The rate lines of the step and its reference, GPU peak fractions, and the ratio as the last line."""
    width = max(len(name), len(reference))
    lines = [rate_line(f"{name:<{width}}", times.step, batch, unit, flops[0]),
             rate_line(f"{reference:<{width}}", times.bound, batch, unit, flops[1])]
    for label, count, t in ((name, flops[0], times.step), (reference, flops[1], times.bound)):
        line = peak_line(device, count, t)
        if line:
            lines.append(f"{label}: {line}")
    lines.append(f"{batch / statistics.median(times.step):.3f} {unit}/s")
    lines.append(f"{times.ratio:.3f} of the {reference} ({'compiled' if compiled else 'eager'} step / eager "
                 f"{reference}, median of {len(times.step)} paired steps)")
    return "\n".join(lines)
