"""Throughput and peak memory of windowed prediction of large image pairs.

Each size runs in a fresh process so that its peak memory is its own. For every size the script
prints the time, the peak resident memory added by prediction, and how much of it is the
full-size buffers (padded input copies and the logit / distance / weight accumulators, which must
grow with the image); the rest is the network's working memory for one batch of windows, which
does not depend on the image size.

    python bench/predict.py                          # 1024 and 2048 pairs, ResNet-18 DeepCL, CPU
    python bench/predict.py --sizes 4096 --device cuda --checkpoint RUN/best.safetensors

The last line is ``<number> megapixels/s`` for the largest size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoints import Encoder  # noqa: E402
from finetune.checkpoint import load_change_model  # noqa: E402
from finetune.inference import ChangePredictor  # noqa: E402
from finetune.model import ChangeModel  # noqa: E402


def rss_mib() -> float:
    """Current resident memory of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(args: argparse.Namespace, size: int) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.checkpoint:
        model, _ = load_change_model(args.checkpoint)
    else:
        model = ChangeModel(Encoder("resnet18"), mean=[0.5] * 3, std=[0.5] * 3)
    predictor = ChangePredictor(model, window=args.window, overlap=args.overlap, margin=args.margin,
                                batch_size=args.batch_size, device=device, precision=args.precision)
    c = model.in_chans
    warm = torch.rand(c, args.window, args.window)
    predictor(warm, warm)  # first-call kernel set-up is not part of the figure
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(c, size, size, generator=g), torch.rand(c, size, size, generator=g)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = rss_mib()
    start = time.perf_counter()
    out = predictor(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    padded = -(-size // model.stride) * model.stride
    buffers = (2 * c + model.num_classes + 2) * padded * padded * 4 / 2**20
    return {
        "size": size,
        "seconds": elapsed,
        "megapixels_per_s": size * size / 1e6 / elapsed,
        "peak_added_mib": max(peak_rss_mib() - before, 0.0),
        "buffers_mib": buffers,
        "gpu_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "changed": float(out["logits"].argmax(0).float().mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--margin", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--checkpoint", help="change-model file (default: random DeepCL ResNet-18)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args, args.child)))
        return
    results = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--child", str(size)] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("sizes", "child") and v is not None
        ]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(line)
        results.append(r)
        gpu = f", GPU peak {r['gpu_peak_mib']:.0f} MiB" if r["gpu_peak_mib"] is not None else ""
        print(f"{size}x{size}: {r['seconds']:.2f} s, {r['megapixels_per_s']:.3f} Mpx/s; peak memory added "
              f"{r['peak_added_mib']:.0f} MiB, of which full-size buffers {r['buffers_mib']:.0f} MiB, "
              f"network working memory {r['peak_added_mib'] - r['buffers_mib']:.0f} MiB{gpu}", flush=True)
    print(f"{results[-1]['megapixels_per_s']:.3f} megapixels/s")


if __name__ == "__main__":
    main()
