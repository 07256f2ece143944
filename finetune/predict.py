"""Predict change maps with a finetuned change model, for one pair or two folders of pairs.

    python -m finetune.predict --checkpoint RUN/best.safetensors --a t1.tif --b t2.tif --out change.tif
    python -m finetune.predict --checkpoint RUN/best.safetensors --a t1/ --b t2/ --out changes/ --distance dist/

Images of any size are predicted with overlapping windows blended at the seams (``--window``,
``--overlap``, ``--batch-size`` bound the memory). The change map is written 0/255 as PNG or TIFF
(by the output suffix; in folder mode the input's format); a GeoTIFF input gives a TIFF output
with the same georeferencing. ``--distance`` also writes the metric branch's distance map as an
8-bit heat map (0: identical embeddings, 255: opposite ones, ``255 * d / 2``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from datasets import DatasetError, list_pairs, read_geo_tags, read_image, to_float_image, write_mask
from engine.cli import run_cli

from .inference import ChangePredictor

_TIFF = (".tif", ".tiff")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m finetune.predict", description="Change maps from a finetuned change model.")
    p.add_argument("--checkpoint", required=True, help="change-model file (a finetuning run's best.safetensors)")
    p.add_argument("--a", required=True, help="first-date image, or a folder of them")
    p.add_argument("--b", required=True, help="second-date image, or a folder with the same file names")
    p.add_argument("--out", required=True, help="change map file (.png/.tif), or a folder in folder mode")
    p.add_argument("--distance", help="also write the distance heat map to this file (or folder)")
    p.add_argument("--window", type=int, default=256, help="window side in pixels (default 256)")
    p.add_argument("--overlap", type=int, default=64, help="overlap between neighbouring windows (default 64)")
    p.add_argument("--margin", type=int, default=8, help="pixels at inner window edges given no weight (default 8)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="bf16/fp16 autocast: faster on recent GPUs and CPUs with bf16 units")
    return p.parse_args(argv)


def distance_to_uint8(distance: torch.Tensor) -> np.ndarray:
    """Distances in ``[0, 2]`` (unit embeddings) -> uint8 ``255 * d / 2``."""
    return (distance.clamp(0, 2) / 2 * 255).round().to(torch.uint8).numpy()


def _out_path(path: Path, source: Path) -> Path:
    if path.suffix.lower() not in (".png", *_TIFF):
        raise DatasetError(f"--out / --distance {path}: write change maps as .png, .tif or .tiff.")
    if source.suffix.lower() in _TIFF and read_geo_tags(source) and path.suffix.lower() not in _TIFF:
        print(f"note: {source} is a GeoTIFF; {path} is a PNG and carries no georeferencing (use a .tif output).",
              file=sys.stderr)
    return path


def read_pair(path_a: Path, path_b: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Both dates as ``(C, H, W)`` float in ``[0, 1]``; an error naming both files when they differ in shape."""
    a, b = read_image(path_a), read_image(path_b)
    if a.shape != b.shape:
        raise DatasetError(f"{path_a} is {a.shape[0]}x{a.shape[1]} with {a.shape[2]} bands but {path_b} is "
                           f"{b.shape[0]}x{b.shape[1]} with {b.shape[2]} bands: both dates must cover the same pixel grid. "
                           "Co-register and crop them to a common extent first.")
    return to_float_image(a), to_float_image(b)


def predict_pair(predictor: ChangePredictor, path_a: Path, path_b: Path, out: Path, distance: Path | None) -> np.ndarray:
    """Predict one pair and write its change map (and distance map); returns the 0/255 map."""
    a, b = read_pair(path_a, path_b)
    if a.shape[0] != predictor.in_chans:
        raise DatasetError(f"{path_a} has {a.shape[0]} bands but the model was trained on {predictor.in_chans}.")
    result = predictor(a, b)
    change = (result["logits"].argmax(0).numpy() * 255).astype(np.uint8)
    tags = read_geo_tags(path_a)
    write_mask(out, change, tags if out.suffix.lower() in _TIFF else None)
    if distance is not None:
        write_mask(distance, distance_to_uint8(result["distance"]), tags if distance.suffix.lower() in _TIFF else None)
    return change


def jobs(args: argparse.Namespace) -> list[tuple[Path, Path, Path, Path | None]]:
    """``(a, b, out, distance)`` for every pair the arguments name."""
    a, b, out = Path(args.a), Path(args.b), Path(args.out)
    dist = Path(args.distance) if args.distance else None
    if a.is_dir() != b.is_dir():
        raise DatasetError(f"--a {a} and --b {b}: pass two image files or two folders, not one of each.")
    if not a.is_dir():
        for p in (a, b):
            if not p.is_file():
                raise DatasetError(f"{p}: image not found.")
        return [(a, b, _out_path(out, a), _out_path(dist, a) if dist is not None else None)]
    if out.suffix.lower() in (".png", *_TIFF):
        raise DatasetError(f"--out {out}: in folder mode --out is a folder, not an image file.")
    result = []
    for pa, pb, name in list_pairs(a, b):
        suffix = ".tif" if pa.suffix.lower() in _TIFF else ".png"
        result.append((pa, pb, out / f"{name}{suffix}", dist / f"{name}{suffix}" if dist is not None else None))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    todo = jobs(args)
    predictor, _ = ChangePredictor.from_checkpoint(args.checkpoint, device=args.device, window=args.window,
                                                   overlap=args.overlap, margin=args.margin, batch_size=args.batch_size,
                                                   precision=args.precision)
    if args.distance and not predictor.has_distance:
        raise DatasetError(f"--distance: {args.checkpoint} was trained without the metric branch "
                           "(model.metric_branch=false) and has no distance map.")
    for pa, pb, out, dist in todo:
        change = predict_pair(predictor, pa, pb, out, dist)
        print(f"{out}: {change.shape[0]}x{change.shape[1]}, {float((change > 0).mean()) * 100:.2f}% changed")
    return 0


if __name__ == "__main__":
    run_cli(main)
