"""Throughput of one DeepCL finetuning step: ResNet-18 + FPN, metric branch, pyramid decoder.

The step is the one the training loop runs: pseudo-change augmentation on the device, both dates
through the shared encoder in one call, CE + Dice + HSCL, backward, SGD update. Random weights and
random data, so nothing is downloaded.

    python bench/finetune_step.py                      # batch 8, 256x256, CPU
    python bench/finetune_step.py --device cuda --precision bf16 --channels-last

Reference on the project's 2-core CPU: the official BIT_CD base_resnet18 runs 0.87 pairs/s.
Every step is timed on its own and the figure uses the median step, because a shared machine's
neighbours slow some steps down by several times. The last line is ``<number> pairs/s``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoints import Encoder  # noqa: E402
from engine.config import OptimConfig  # noqa: E402
from engine.loop import autocast_for, build_optimizer  # noqa: E402
from finetune.augment import PseudoChangeAugment  # noqa: E402
from finetune.losses import ChangeLoss, HardSampleContrastiveLoss  # noqa: E402
from finetune.model import ChangeModel  # noqa: E402
from finetune.task import ChangeTask  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--name", default="deepcl", choices=("deepcl", "siam_diff"))
    args = p.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = ChangeModel(Encoder("resnet18"), mean=[0.5] * 3, std=[0.5] * 3, name=args.name)
    task = ChangeTask(model, ChangeLoss(HardSampleContrastiveLoss()), PseudoChangeAugment()).to(device)
    if args.channels_last:
        task = task.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(task, OptimConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4))
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    batch = {
        "a": torch.rand(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt),
        "b": torch.rand(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt),
        "label": (torch.rand(args.batch, args.size, args.size, device=device) < 0.1).long(),
    }
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        with autocast_for(device, args.precision):
            out = task(batch, generator=gen)
        scaler.scale(out["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    task.train()
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"{args.name} resnet18, batch {args.batch}, {args.size}x{args.size}, {args.precision}, {device}, "
          f"{torch.get_num_threads()} threads: median {median:.3f} s/step (fastest {min(times):.3f}, "
          f"mean {statistics.mean(times):.3f}, {args.steps} steps)")
    print(f"{args.batch / median:.3f} pairs/s")


if __name__ == "__main__":
    main()
