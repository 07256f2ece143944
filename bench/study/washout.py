"""How far finetuning moved a pretrained encoder: relative weight change per part, from the run folders.

    python bench/study/washout.py runs/study/sadl/encoder.safetensors runs/study/synthetic/sadl/*/*/s*

For each finetuning run (a folder with final.safetensors), ``||W_final - W_init|| / ||W_init||`` over the
convolution and linear weights of each part of the encoder (stem, the four ResNet stages, the FPN
neck), averaged over the runs given. Near 0: the finetuned encoder keeps the pretrained weights;
near or above 1: the recipe rewrote them and the initialisation was washed out. The last line is
``mean_relative_change=<f>`` over all parts.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from densechange.checkpoints import load_file  # noqa: E402


def part(key: str) -> str:
    """``backbone.layer2.0.conv1.weight`` -> ``layer2``; ``neck...`` -> ``neck``; the stem otherwise."""
    bits = key.split(".")
    if bits[0] == "neck":
        return "neck"
    return bits[1] if len(bits) > 1 and bits[1].startswith("layer") else "stem"


def encoder_weights(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix) and v.dim() > 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("encoder", help="the pretrained encoder.safetensors the runs started from")
    parser.add_argument("runs", nargs="+", help="finetuning run folders")
    args = parser.parse_args()
    init = encoder_weights(load_file(args.encoder)[0], "")
    changes: dict[str, list[float]] = defaultdict(list)
    for run in args.runs:
        final = encoder_weights(load_file(Path(run) / "final.safetensors")[0], "encoder.")
        num, den = defaultdict(float), defaultdict(float)
        for key, w0 in init.items():
            num[part(key)] += float((final[key] - w0).pow(2).sum())
            den[part(key)] += float(w0.pow(2).sum())
        for name in num:
            changes[name].append((num[name] / den[name]) ** 0.5)
    order = ["stem", "layer1", "layer2", "layer3", "layer4", "neck"]
    for name in sorted(changes, key=lambda n: order.index(n) if n in order else len(order)):
        values = changes[name]
        print(f"{name:7s} relative change {sum(values) / len(values):.3f} over {len(values)} runs")
    everything = [v for vs in changes.values() for v in vs]
    print(f"mean_relative_change={sum(everything) / len(everything):.3f}")


if __name__ == "__main__":
    main()
