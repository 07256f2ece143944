"""Throughput of one full SaDL pretraining step, as a fraction of its encoder bound (DESIGN section 7).

Times everything a training step does on the device: two views plus the background-swap view,
class-balanced sampling, the backbone on all three views, point features, heads, loss, backward
and the SGD update. Batches are synthetic scenes with building masks, prepared once up front.

In the same run, alternating with the step, it times the *encoder bound*: the same timm backbone
and FPN neck alone, forward + backward + SGD on the same three views, same precision, same memory
format (see ``bench/measure.py``). It prints the model FLOPs of both (``torch.utils.flop_counter``),
the achieved FLOP/s and, on CUDA, the fraction of the device's dense bf16 peak.

    python bench/pretrain_step.py --batch 8 --size 256 --steps 7              # CPU, fp32 (auto), eager
    python bench/pretrain_step.py --batch 8 --size 256 --steps 7 --compile    # trainer.compile=true
    python bench/pretrain_step.py --device cuda --batch 64 --precision bf16   # a GPU
    python bench/pretrain_step.py --precision bf16 --versus-precision fp32    # emulated bf16 against fp32

``--precision auto`` (the default) resolves like ``trainer.precision=auto``. Every figure is the
median over ``--steps`` steps after ``--warmup`` untimed ones (compilation happens in the warm-up).
The second-to-last line is ``<images/s> images/s``; the last line is ``<ratio> of the encoder
bound``: step images/s divided by bound images/s, the median of the per-pair ratios (with
``--versus-precision P``: ``<ratio> of the sadl step in P``, the same step timed alternately in P).
"""
from __future__ import annotations

import argparse
import itertools
import sys
from typing import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from measure import count_flops, describe_device, encoder_bound, report, step_arguments, warm_then_time  # noqa: E402

from densechange.models import Encoder  # noqa: E402
from densechange.datasets import SyntheticImageMaskDataset  # noqa: E402
from densechange.engine.precision import PRECISIONS, autocast_for, resolve_precision  # noqa: E402
from densechange.engine.seeding import step_generator  # noqa: E402
from densechange.engine.speed import compile_task, configure_cuda  # noqa: E402
from densechange.pretrain.sadl.model import SaDL  # noqa: E402
from densechange.pretrain.sadl.views import ViewAugment  # noqa: E402


def sadl_step(args: argparse.Namespace, device: torch.device, precision: str) -> Callable[[int], float]:
    """One SaDL training step ``step(i)`` (augmentation drawn from seed ``i``) on a fixed batch of synthetic scenes."""
    torch.manual_seed(0)
    data = SyntheticImageMaskDataset(num_images=args.batch, size=args.size, seed=0)
    samples = [data[i] for i in range(args.batch)]
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    batch = {
        "image": torch.stack([s["image"] for s in samples]).to(device).contiguous(memory_format=fmt),
        "mask": torch.stack([s["mask"] for s in samples]).to(device),
    }
    encoder = Encoder(args.backbone, neck_channels=args.neck_channels, out_indices=None)
    task = SaDL(encoder, mean=[0.5] * 3, std=[0.5] * 3, augment=ViewAugment(size=args.size)).to(device)
    task = task.to(memory_format=fmt)
    opt = torch.optim.SGD(task.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(i: int) -> float:
        with autocast_for(device, precision):
            out = task(batch, generator=step_generator(0, 0, i))
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out["loss"].detach())

    step.task = task  # type: ignore[attr-defined]
    return step


def main() -> None:
    p = step_arguments(__doc__.splitlines()[0])
    p.add_argument("--versus-precision", choices=PRECISIONS[1:],
                   help="time against the same step in this precision instead of the encoder bound (emulation slowdowns)")
    p.add_argument("--neck-channels", type=int, default=256)
    args = p.parse_args()

    device = torch.device(args.device)
    configure_cuda(device)
    precision = resolve_precision(args.precision, device)
    step = sadl_step(args, device, precision)
    if args.versus_precision:
        other, draws = sadl_step(args, device, args.versus_precision), itertools.count()
        reference, name = (lambda: other(next(draws))), f"sadl step in {args.versus_precision}"
    else:
        fmt = torch.channels_last if args.channels_last else torch.contiguous_format
        views = torch.rand(3 * args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt)
        reference, name = encoder_bound(args.backbone, args.neck_channels, views, precision), "encoder bound"

    flops = count_flops(lambda: step(0)), count_flops(reference)  # eager, before any compilation
    if args.compile:
        compile_task(step.task)  # type: ignore[attr-defined]
    times, warm = warm_then_time(step, reference, args.warmup, args.steps, device)
    print(f"device={describe_device(device)} precision={args.precision}->{precision} channels_last={args.channels_last} "
          f"compile={args.compile} batch={args.batch} size={args.size} views=3 steps={args.steps} warm-up {warm:.1f} s")
    print(report(device, "sadl step", "images", args.batch, flops, times, args.compile, reference=name))


if __name__ == "__main__":
    main()
