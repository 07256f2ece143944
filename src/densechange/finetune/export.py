"""``densechange export``: a finetuned change model as ONNX, for ONNX Runtime, TensorRT and QGIS (Deepness).

    densechange export --checkpoint RUN/best.safetensors --out model.onnx            # (a, b) -> logits, distance
    densechange export --checkpoint RUN/best.safetensors --out model.onnx --stacked  # one 2C-band input
    densechange export --checkpoint RUN/best.safetensors --out change_qgis.onnx --deepness

What is written and how it is verified: :mod:`densechange.finetune.onnx.export`.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from densechange.engine.cli import run_cli
from densechange.finetune.inference.windows import DEFAULT_WINDOWS
from densechange.finetune.onnx.export import Exported, export_checkpoint

__all__ = ["Exported", "export_checkpoint", "main"]

def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="densechange export", description="Export a change model to ONNX.")
    p.add_argument("--checkpoint", required=True, help="change-model file (a finetuning run's best.safetensors)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--stacked", action="store_true", help="one input of 2C bands (A's, then B's) instead of two")
    p.add_argument("--deepness", action="store_true",
                   help="for the QGIS Deepness plugin: stacked, a fixed tile of --window px, probabilities, its metadata keys")
    d = DEFAULT_WINDOWS
    p.add_argument("--window", type=int,
                   help=f"window size recorded in the file, the fixed input size of the Deepness form and of a ViT "
                        f"(default: the run's, else {d.size})")
    p.add_argument("--overlap", type=int,
                   help=f"overlap between windows recorded in the file (default: the run's, else {d.overlap})")
    p.add_argument("--margin", type=int,
                   help=f"dead margin at inner window edges recorded in the file (default: the run's, else {d.margin})")
    p.add_argument("--resolution", type=float, help="ground resolution in cm/px for Deepness (default: from the training data)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    form = "deepness" if args.deepness else "stacked" if args.stacked else "pair"
    done = export_checkpoint(args.checkpoint, args.out, form=form, window=args.window, overlap=args.overlap,
                             margin=args.margin, resolution_cm=args.resolution)
    for note in done.notes:
        print(f"note: {note}")
    print(f"{done.path}: {done.form} form, ONNX Runtime matches PyTorch within {done.max_difference:.2g}")
    return 0


if __name__ == "__main__":
    run_cli(main)
