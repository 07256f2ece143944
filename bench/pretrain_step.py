"""Throughput of one full SaDL pretraining step (the DESIGN section 7 figure).

Times everything a training step does on the device: two views plus the background-swap view,
class-balanced sampling, the ResNet-18 + FPN forward on all three views, heads, loss, backward and
the SGD update. Batches are synthetic scenes with building masks, prepared once up front.

    python bench/pretrain_step.py --batch 8 --size 256 --steps 5 --device cpu

The last line is ``<images/s> images/s``: images of the batch per second at the median step time
(each image is seen in three views); the median resists the noise of a shared machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from checkpoints import Encoder
from datasets import SyntheticImageMaskDataset
from engine.loop import autocast_for
from engine.seeding import step_generator
from pretrain.sadl.model import SaDL
from pretrain.sadl.views import ViewAugment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--backbone", default="resnet18")
    args = p.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    data = SyntheticImageMaskDataset(num_images=args.batch, size=args.size, seed=0)
    samples = [data[i] for i in range(args.batch)]
    batch = {
        "image": torch.stack([s["image"] for s in samples]).to(device),
        "mask": torch.stack([s["mask"] for s in samples]).to(device),
    }
    task = SaDL(Encoder(args.backbone), mean=[0.5] * 3, std=[0.5] * 3, augment=ViewAugment(size=args.size)).to(device)
    if args.channels_last:
        task = task.to(memory_format=torch.channels_last)
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(task.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(i: int) -> float:
        with autocast_for(device, args.precision):
            out = task(batch, generator=step_generator(0, 0, i))
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(out["loss"])

    for i in range(args.warmup):
        step(i)
    times = []
    for i in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = step(args.warmup + i)  # float(loss) syncs the device
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    rate = args.batch / median
    print(f"device={device} threads={torch.get_num_threads()} batch={args.batch} size={args.size} precision={args.precision} "
          f"channels_last={args.channels_last} steps={args.steps} s/step median={median:.3f} "
          f"min={min(times):.3f} max={max(times):.3f} last_loss={loss:.4f}")
    print(f"{rate:.3f} images/s")


if __name__ == "__main__":
    main()
