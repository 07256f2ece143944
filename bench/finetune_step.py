"""Throughput of one DeepCL finetuning step, as a fraction of its encoder bound.

The step is the one the training loop runs: pseudo-change augmentation on the device, both dates
through the shared encoder in one call, metric branch, pyramid decoder, CE + Dice + HSCL, backward,
SGD update. Random weights and random data, so nothing is downloaded.

In the same run, alternating with the step, it times the *encoder bound*: the timm backbone and
FPN neck alone, forward + backward + SGD on the same 2 x batch images, same precision, same memory
format (see ``bench/measure.py``), and prints the model FLOPs and FLOP/s of both (and, on CUDA, the
fraction of the device's dense bf16 peak).

    python bench/finetune_step.py                                  # batch 8, 256x256, CPU, auto precision
    python bench/finetune_step.py --device cuda --precision bf16 --compile

Reference on the project's 2-core CPU: the official BIT_CD base_resnet18 runs 0.87 pairs/s. Every
figure is a median over ``--steps`` paired steps. The second-to-last line is ``<pairs/s> pairs/s``
and the last line ``<ratio> of the encoder bound``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from measure import count_flops, describe_device, encoder_bound, report, step_arguments, warm_then_time  # noqa: E402

from densechange.models import Encoder  # noqa: E402
from densechange.engine.config import OptimConfig  # noqa: E402
from densechange.engine.loop import build_optimizer  # noqa: E402
from densechange.engine.precision import autocast_for, resolve_precision  # noqa: E402
from densechange.engine.speed import compile_task, configure_cuda  # noqa: E402
from densechange.finetune.deepcl.decoders import DECODERS  # noqa: E402
from densechange.finetune.deepcl.pseudo_change import PseudoChangeAugment  # noqa: E402
from densechange.finetune.deepcl.losses import ChangeLoss, HardSampleContrastiveLoss  # noqa: E402
from densechange.finetune.deepcl.model import ChangeModel  # noqa: E402
from densechange.finetune.deepcl.task import ChangeTask  # noqa: E402


def main() -> None:
    p = step_arguments(__doc__.splitlines()[0])
    p.add_argument("--name", default="deepcl", choices=tuple(DECODERS))
    args = p.parse_args()

    device = torch.device(args.device)
    configure_cuda(device)
    precision = resolve_precision(args.precision, device)
    torch.manual_seed(0)
    model = ChangeModel(Encoder(args.backbone), mean=[0.5] * 3, std=[0.5] * 3, name=args.name)
    task = ChangeTask(model, ChangeLoss(HardSampleContrastiveLoss()), PseudoChangeAugment()).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    task = task.to(memory_format=fmt)
    optimizer = build_optimizer(task, OptimConfig(name="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    batch = {
        "a": torch.rand(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt),
        "b": torch.rand(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=fmt),
        "label": (torch.rand(args.batch, args.size, args.size, device=device) < 0.1).long(),
    }
    views = torch.cat([batch["a"], batch["b"]]).contiguous(memory_format=fmt)
    bound = encoder_bound(args.backbone, 256, views, precision)
    gen = torch.Generator().manual_seed(0)

    def step(_: int = 0) -> None:
        with autocast_for(device, precision):
            out = task(batch, generator=gen)
        scaler.scale(out["loss"]).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    task.train()
    flops = count_flops(step), count_flops(bound)
    if args.compile:
        compile_task(task)
    times, warm = warm_then_time(step, bound, args.warmup, args.steps, device)
    print(f"device={describe_device(device)} precision={args.precision}->{precision} channels_last={args.channels_last} "
          f"compile={args.compile} {args.name} {args.backbone} batch={args.batch} size={args.size} steps={args.steps} "
          f"warm-up {warm:.1f} s")
    print(report(device, "deepcl step", "pairs", args.batch, flops, times, args.compile))

if __name__ == "__main__":
    main()
