"""Predict change maps with a finetuned change model, for one pair of scenes or two folders of pairs.

    densechange predict --checkpoint RUN/best.safetensors --a t1.tif --b t2.tif --out change.tif
    densechange predict --checkpoint RUN/best.safetensors --a t1.tif --b t2.tif --out change.tif --cog \\
        --probability --distance distance.tif
    densechange predict --checkpoint RUN/best.safetensors --a t1/ --b t2/ --out changes/

Scenes of any size, in any raster format GDAL reads, are streamed block by block in flat memory
(:mod:`densechange.finetune.inference.streaming`): overlapping windows blended at the seams (``--window``, ``--overlap``,
``--batch-size``; the one default window of evaluation, validation and export), the output written as a tiled, compressed GeoTIFF with A's CRS, transform and
no-data (``--cog``: a Cloud-Optimised GeoTIFF with overviews; a ``.png`` name: a PNG, with its
georeferencing in a ``.png.aux.xml`` sidecar). When both dates are georeferenced on different
grids, B is resampled onto A's grid on the fly.

The change map is 0/255. ``--distance`` also writes the metric branch's distance map (0: identical
embeddings, 254: opposite ones) and ``--probability`` the change probability (0..254); both use 255
for no-data. In folder mode outputs take the input's name, as ``.tif`` for TIFF inputs, else ``.png``.

A ``.onnx`` checkpoint (``densechange export``, two inputs or ``--stacked``) runs through the
same streaming path on ONNX Runtime (``pip install 'densechange[onnx]'``), fed exactly what the
PyTorch model is fed, so both give the same maps.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from densechange.datasets import DatasetError, list_pairs
from densechange.engine.cli import run_cli
from densechange.engine.distributed import resolve_device
from densechange.engine.precision import resolve_precision

from densechange.finetune.inference.backend import Predictor
from densechange.finetune.inference.predictor import ChangePredictor
from densechange.finetune.onnx.runtime import OnnxPredictor
from densechange.finetune.inference.streaming import SceneOutputs, predict_scene
from densechange.finetune.inference.windows import BATCH_PIXELS, DEFAULT_WINDOWS, WindowSettings, batch_for

_TIFF = (".tif", ".tiff")
_OUT = (".png", *_TIFF)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="densechange predict", description="Change maps from a finetuned change model.")
    p.add_argument("--checkpoint", required=True,
                   help="change-model file (a finetuning run's best.safetensors), or a model exported to .onnx")
    p.add_argument("--a", required=True, help="first-date raster, or a folder of them")
    p.add_argument("--b", required=True, help="second-date raster, or a folder with the same file names")
    p.add_argument("--out", required=True, help="change map file (.tif/.png), or a folder in folder mode")
    p.add_argument("--distance", help="also write the distance map to this file (or folder)")
    p.add_argument("--probability", nargs="?", const="", default=None,
                   help="also write the change probability as uint8: to this file (or folder), or beside --out")
    p.add_argument("--cog", action="store_true", help="write Cloud-Optimised GeoTIFFs with overviews")
    d = DEFAULT_WINDOWS
    p.add_argument("--window", type=int, default=None,
                   help=f"window side in pixels (default {d.size}; a fixed-size .onnx file's own size)")
    p.add_argument("--overlap", type=int, default=None,
                   help=f"overlap between neighbouring windows (default {d.overlap}; an .onnx file's own at its window)")
    p.add_argument("--margin", type=int, default=None,
                   help=f"pixels at inner window edges given no weight (default {d.margin}; an .onnx file's own at its window)")
    p.add_argument("--batch-size", type=int,
                   help=f"windows per forward pass (default: {BATCH_PIXELS['cpu']:,} pixels' worth on a CPU, "
                        f"{BATCH_PIXELS['cuda']:,} on a GPU; e.g. {batch_for(d.size)} and "
                        f"{batch_for(d.size, 'cuda')} at the default window)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto (default): bf16 where the device runs it natively, else fp32; bf16/fp16 autocast")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network: faster windows after a warm-up of tens of seconds (PyTorch only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _checked(path: Path) -> Path:
    if path.suffix.lower() not in _OUT:
        raise DatasetError(f"{path}: write change maps as .png, .tif or .tiff.")
    return path


def _beside(out: Path, kind: str) -> Path:
    return out.with_name(f"{out.stem}_{kind}{out.suffix}")


def jobs(args: argparse.Namespace) -> list[tuple[Path, Path, SceneOutputs]]:
    """``(a, b, outputs)`` for every pair the arguments name."""
    a, b, out = Path(args.a), Path(args.b), Path(args.out)
    dist = Path(args.distance) if args.distance else None
    prob = None if args.probability is None else Path(args.probability) if args.probability else ""
    if a.is_dir() != b.is_dir():
        raise DatasetError(f"--a {a} and --b {b}: pass two image files or two folders, not one of each.")
    if not a.is_dir():
        for p in (a, b):
            if not p.is_file():
                raise DatasetError(f"{p}: image not found.")
        probability = None if prob is None else _checked(prob) if prob else _beside(out, "probability")
        return [(a, b, SceneOutputs(_checked(out), _checked(dist) if dist else None, probability, args.cog))]
    if out.suffix.lower() in _OUT:
        raise DatasetError(f"--out {out}: in folder mode --out is a folder, not an image file.")
    result = []
    for pa, pb, name in list_pairs(a, b):
        file = f"{name}{'.tif' if pa.suffix.lower() in _TIFF or args.cog else '.png'}"
        probability = None if prob is None else (prob or out.with_name(out.name + "_probability")) / file
        result.append((pa, pb, SceneOutputs(out / file, dist / file if dist else None, probability, args.cog)))
    return result


def load_predictor(args: argparse.Namespace) -> Predictor:
    """The backend by the checkpoint's suffix: ONNX Runtime for ``.onnx``, else PyTorch."""
    if Path(args.checkpoint).suffix.lower() == ".onnx":
        precision = "fp32" if args.precision == "auto" else args.precision  # the graph's own float32
        if args.compile:
            raise DatasetError(f"--compile applies to PyTorch checkpoints; {args.checkpoint} runs on ONNX Runtime.")
        return OnnxPredictor.from_file(args.checkpoint, device=args.device, precision=precision, size=args.window,
                                       overlap=args.overlap, margin=args.margin, batch_size=args.batch_size)
    d = DEFAULT_WINDOWS
    windows = WindowSettings(args.window or d.size, d.overlap if args.overlap is None else args.overlap,
                             d.margin if args.margin is None else args.margin, args.batch_size or d.batch_size)
    precision = resolve_precision(args.precision, resolve_device(args.device))  # auto: bf16 only where native
    return ChangePredictor.from_checkpoint(args.checkpoint, windows, device=args.device, precision=precision,
                                           compile=args.compile)[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    todo = jobs(args)
    predictor = load_predictor(args)
    if args.distance and not predictor.has_distance:
        raise DatasetError(f"--distance: {args.checkpoint} was trained without the metric branch "
                           "(model.metric_branch=false) and has no distance map.")
    for pa, pb, outputs in todo:
        stats = predict_scene(predictor, pa, pb, outputs, progress=not args.no_progress and len(todo) == 1)
        print(f"{outputs.change}: {stats['changed'] * 100:.2f}% changed, {stats['valid'] * 100:.1f}% with data, "
              f"{stats['megapixels_per_s']:.2f} Mpx/s")
    return 0


if __name__ == "__main__":
    run_cli(main)
