"""Which prediction window to default to: speed and F1 of windows 256, 512 and 1024 on LEVIR-CD 1024² tiles.

The overlap between windows costs ``(w / (w - o))²`` in repeated work (1.78x at 256/64, 1.31x at
512/64, none for one 1024² window on a 1024² tile), and a larger window gives the network more
context than it saw in training (256² crops). This script measures both on real tiles: each window
predicts every tile through ``densechange predict``'s streaming path (the same overlap and margin,
and the same pixels per batch: 8 windows of 256², 2 of 512², 1 of 1024²), in fp32 and with
``precision=auto``; F1 is the changed class's on the tiles' labels.

    python bench/predict_windows.py --checkpoint RUN/best.safetensors                 # test_102 of ../shared/data
    python bench/predict_windows.py --checkpoint RUN/best.safetensors --tiles test_7 test_12 test_102

On a 1024² tile the windows' geometry decides the work (25 windows of 256², 9 of 512², one of
1024²), so each window is also timed on a larger random scene (``--scene``), where the work per
pixel is the overlap's ``(w / (w - o))²``. The last line names the window that is fastest on the
scene among those whose F1 is within 0.01 of the best F1.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.predict import random_pair  # noqa: E402
from densechange.datasets.io.images import read_image  # noqa: E402
from densechange.engine.distributed import resolve_device  # noqa: E402
from densechange.engine.precision import device_name, resolve_precision  # noqa: E402
from densechange.finetune.inference.predictor import ChangePredictor  # noqa: E402
from densechange.finetune.inference.streaming import SceneOutputs, predict_scene  # noqa: E402
from densechange.finetune.inference.windows import WindowSettings  # noqa: E402

LEVIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "levir-cd-1024"
BATCH_PIXELS = 8 * 256 * 256


def f1_of(pred: np.ndarray, label: np.ndarray) -> float:
    tp = int((pred & label).sum())
    fp, fn = int((pred & ~label).sum()), int((~pred & label).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="change model trained at 256² crops")
    p.add_argument("--root", default=str(LEVIR), help="folder with A/, B/, label/ of the tiles")
    p.add_argument("--tiles", nargs="+", default=["test_102"], help="tile names (default: the held-out test_102)")
    p.add_argument("--windows", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--margin", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scene", type=int, default=4096,
                   help="also time each window once on a random scene of this side (0: no scene), where the overlap's "
                        "cost approaches (w / (w - o))² as it does on real scenes")
    args = p.parse_args()
    root, device = Path(args.root), resolve_device(args.device)
    auto = resolve_precision("auto", device, warn=False)
    precisions = ["fp32"] + ([auto] if auto != "fp32" else [])
    labels = {t: read_image(root / "label" / f"{t}.png")[..., 0] > 0 for t in args.tiles}
    megapixels = sum(v.size for v in labels.values()) / 1e6
    predictors = {(w, prec): ChangePredictor.from_checkpoint(
        args.checkpoint, WindowSettings(w, args.overlap, args.margin, max(1, BATCH_PIXELS // (w * w))),
        device=str(device), precision=prec)[0] for w in args.windows for prec in precisions}
    seconds: dict[tuple[int, str], list[float]] = {k: [] for k in predictors}
    f1: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):  # interleaved rounds: drift of the machine's speed hits every entry alike
            for key, predictor in predictors.items():
                total, preds = 0.0, {}
                for tile in args.tiles:
                    out = Path(tmp) / f"{tile}_{key[0]}_{key[1]}.tif"
                    total += predict_scene(predictor, root / "A" / f"{tile}.png", root / "B" / f"{tile}.png",
                                           SceneOutputs(out), progress=False)["seconds"]
                    preds[tile] = read_image(out)[..., 0] == 255
                seconds[key].append(total)
                pred = np.concatenate([preds[t].ravel() for t in args.tiles])
                f1[key] = f1_of(pred, np.concatenate([labels[t].ravel() for t in args.tiles]))
            print(f"round {r + 1}/{args.repeats} done", flush=True)
        scene_speed: dict[tuple[int, str], float] = {}
        if args.scene:
            a, b = random_pair(Path(tmp), args.scene)
            for key, predictor in predictors.items():
                stats = predict_scene(predictor, a, b, SceneOutputs(Path(tmp) / "scene.tif"), progress=False)
                scene_speed[key] = stats["megapixels_per_s"]
    print(f"\n{', '.join(args.tiles)} ({megapixels:.2f} Mpx), overlap {args.overlap}, margin {args.margin}; "
          f"{device_name(device)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    scene = f"{args.scene}² scene" if args.scene else "no scene"
    print(f"| window | batch | precision | Mpx/s, tiles | against {args.windows[0]} | Mpx/s, {scene} | against "
          f"{args.windows[0]} | F1 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    speed = {k: megapixels / statistics.median(v) for k, v in seconds.items()}
    for (w, prec), value in speed.items():
        on_scene = scene_speed.get((w, prec))
        scene_cells = (f"{on_scene:.3f} | {on_scene / scene_speed[(args.windows[0], prec)]:.2f}x" if on_scene else "- | -")
        print(f"| {w} | {predictors[(w, prec)].batch_size} | {prec} | {value:.3f} | "
              f"{value / speed[(args.windows[0], prec)]:.2f}x | {scene_cells} | {f1[(w, prec)]:.4f} |")
    best = max(f1[(w, "fp32")] for w in args.windows)
    good = [w for w in args.windows if f1[(w, "fp32")] >= best - 0.01]
    rate = scene_speed or speed
    choice = max(good, key=lambda w: rate[(w, "fp32")])
    print(f"window {choice}: {rate[(choice, 'fp32')]:.3f} Mpx/s fp32 ({scene if scene_speed else 'tiles'}), "
          f"F1 {f1[(choice, 'fp32')]:.4f} (best F1 {best:.4f})")


if __name__ == "__main__":
    main()
