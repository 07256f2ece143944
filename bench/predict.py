"""Prediction speed against its two references, on one scene in one run: ONNX Runtime and the forward bound.

Every figure predicts the same pair with the same model, window and overlap through
``densechange predict``'s streaming path (read by block, windows blended, GeoTIFF written):

- PyTorch in fp32, and with ``precision=auto`` (named with what it resolved to on this device);
- PyTorch in fp32 without the inference optimisations (no folded batch norms, no channels-last):
  what prediction ran at before them;
- ONNX Runtime in fp32, on the same weights exported by ``densechange export``;
- the forward bound, in fp32 and with ``auto``: the network alone on the same window batches,
  already in memory as float tensors, with no reading, blending or writing.

Runs are interleaved (``--repeats`` rounds of every entry) and each figure is the median, so a
machine whose speed drifts affects all entries alike; the best round of each entry is shown too, the
figure least touched by other work on a shared machine. The change maps of ``auto`` and ONNX Runtime
are compared with PyTorch fp32's (share of pixels that differ).

    python bench/predict.py                                   # LEVIR-CD test_102 from ../shared/data, else a random 1024² pair
    python bench/predict.py --a A.tif --b B.tif --checkpoint RUN/best.safetensors --window 512
    python bench/predict.py --device cuda --size 4096         # on a GPU (ONNX Runtime's CUDA provider when installed)

The last line is ``PyTorch fp32 <x> Mpx/s: <r1>x ONNX Runtime, <r2> of the forward bound`` (with
``--compile``, then ``, compiled <r3>x ONNX Runtime``), from the medians and then from the best rounds.
Targets: r1 >= 1.0, r2 >= 0.9, and ``auto`` >= 1.8x fp32 where the device runs bf16 natively.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.models import Encoder  # noqa: E402
from densechange.datasets.io.images import read_image, to_float_batch  # noqa: E402
from densechange.engine.distributed import resolve_device  # noqa: E402
from densechange.engine.precision import device_name, resolve_precision  # noqa: E402
from densechange.finetune.checkpoint import load_change_model, save_change_model  # noqa: E402
from densechange.finetune.deepcl.model import ChangeModel  # noqa: E402
from densechange.finetune.export import export_checkpoint  # noqa: E402
from densechange.finetune.inference.backend import Predictor  # noqa: E402
from densechange.finetune.inference.predictor import ChangePredictor  # noqa: E402
from densechange.finetune.inference.streaming import SceneOutputs, predict_scene  # noqa: E402
from densechange.finetune.inference.windows import DEFAULT_WINDOWS, WindowGrid, WindowSettings, batch_for  # noqa: E402
from densechange.finetune.onnx.runtime import OnnxPredictor  # noqa: E402

LEVIR_TILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "levir-cd-1024"


def random_pair(folder: Path, size: int) -> tuple[Path, Path]:
    """A ``size``² uint8 RGB GeoTIFF pair of noise: the network's speed does not depend on the content."""
    rng = np.random.default_rng(0)
    paths = folder / "a.tif", folder / "b.tif"
    for path in paths:
        with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=3, dtype="uint8", tiled=True,
                           blockxsize=256, blockysize=256, compress="deflate", crs="EPSG:32633",
                           transform=from_origin(500000, 4650000, 0.5, 0.5)) as dst:
            dst.write(rng.integers(0, 256, (3, size, size), dtype=np.uint8))
    return paths


def window_batches(predictor: Predictor, a_path: Path, b_path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The windows the stream runs, as the float batches it feeds the network, held in memory."""
    a, b = read_image(a_path), read_image(b_path)
    h, w = a.shape[:2]
    grid = WindowGrid.for_scene(h, w, predictor.windows, predictor.stride)
    hp, wp = grid.padded_h, grid.padded_w
    a = np.pad(a, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    b = np.pad(b, ((0, hp - h), (0, wp - w), (0, 0)), mode="edge")
    starts = [(y, x) for y in grid.ys for x in grid.xs]
    batches = []
    size = predictor.batch(grid.win_h, grid.win_w)
    for i in range(0, len(starts), size):
        chunk = starts[i : i + size]
        batches.append(tuple(to_float_batch(np.stack([t[y : y + grid.win_h, x : x + grid.win_w] for y, x in chunk]))
                             for t in (a, b)))
    return batches


def forward_bound(predictor: Predictor, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Seconds of the network alone on ``batches`` (inputs already on the device)."""
    on_device = [(x.to(predictor.device), y.to(predictor.device)) for x, y in batches]
    sync = torch.cuda.synchronize if predictor.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for x, y in on_device:
        predictor.forward_windows(x, y)
    sync()
    return time.perf_counter() - start


def streamed(predictor: Predictor, a: Path, b: Path, out: Path) -> float:
    """Seconds of ``densechange predict``'s streaming path on the pair, change map written to ``out``."""
    return predict_scene(predictor, a, b, SceneOutputs(out), progress=False)["seconds"]


def changed(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1) == 255


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", help="first date (default: LEVIR-CD test_102 when ../shared/data has it, else random)")
    p.add_argument("--b", help="second date")
    p.add_argument("--size", type=int, default=1024,
                   help="side of the random pair used when no scene is given (other than 1024: also instead of LEVIR-CD)")
    p.add_argument("--checkpoint", help="change-model file (default: a random DeepCL ResNet-18)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOWS.size)
    p.add_argument("--overlap", type=int, default=DEFAULT_WINDOWS.overlap)
    p.add_argument("--margin", type=int, default=DEFAULT_WINDOWS.margin)
    p.add_argument("--batch-size", type=int, help="windows per batch (default: 2 x 256² pixels' worth on a CPU, 8 x 256² on a GPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--onnx-device", choices=("auto", "cpu", "cuda"),
                   help="ONNX Runtime's device (default: auto on a GPU, i.e. its CUDA provider when installed; else cpu)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time a torch.compile'd fp32 predictor (warm-up shown)")
    p.add_argument("--no-onnx", action="store_true", help="leave ONNX Runtime out (e.g. a transformer backbone)")
    args = p.parse_args()
    device = resolve_device(args.device)
    args.batch_size = args.batch_size or batch_for(args.window, device)
    auto = resolve_precision("auto", device, warn=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.a and args.b:
            a, b, scene = Path(args.a), Path(args.b), f"{Path(args.a).name}"
        elif (LEVIR_TILE / "A" / "test_102.png").exists() and args.size == 1024:
            a, b, scene = LEVIR_TILE / "A" / "test_102.png", LEVIR_TILE / "B" / "test_102.png", "LEVIR-CD test_102"
        else:
            a, b = random_pair(folder, args.size)
            scene = f"random {args.size}² GeoTIFF pair"
        checkpoint = Path(args.checkpoint) if args.checkpoint else folder / "random_deepcl.safetensors"
        if not args.checkpoint:
            torch.manual_seed(0)
            save_change_model(checkpoint, ChangeModel(Encoder("resnet18"), mean=[0.5] * 3, std=[0.5] * 3))
        windows = WindowSettings(args.window, args.overlap, args.margin, args.batch_size)
        entries: dict[str, Predictor] = {
            "torch fp32": ChangePredictor.from_checkpoint(checkpoint, windows, device=str(device), precision="fp32")[0],
            f"torch auto ({auto})": ChangePredictor.from_checkpoint(checkpoint, windows, device=str(device),
                                                                     precision=auto)[0],
            "torch fp32 unoptimised": ChangePredictor(load_change_model(checkpoint)[0], windows, device=device,
                                                      precision="fp32"),
        }
        warmups: dict[str, float] = {}
        if args.compile:
            compiled = ChangePredictor.from_checkpoint(checkpoint, windows, device=str(device), precision="fp32",
                                                       compile=True)[0]
            entries["torch fp32 compiled"] = compiled
        if not args.no_onnx:
            onnx_file = folder / "model.onnx"
            done = export_checkpoint(checkpoint, onnx_file, window=args.window, overlap=args.overlap, margin=args.margin)
            print(f"exported to ONNX: ONNX Runtime matches PyTorch within {done.max_difference:.2g}", flush=True)
            onnx_device = args.onnx_device or ("auto" if device.type == "cuda" else "cpu")
            entries["onnx fp32"] = OnnxPredictor.from_file(onnx_file, device=onnx_device, size=args.window,
                                                           overlap=args.overlap, margin=args.margin,
                                                           batch_size=args.batch_size)
            print(f"ONNX Runtime runs on {entries['onnx fp32'].session.get_providers()[0]}", flush=True)
        batches = window_batches(entries["torch fp32"], a, b)
        n_windows = sum(x.shape[0] for x, _ in batches)
        with rasterio.open(a) as src:
            height, width = src.height, src.width
        megapixels = height * width / 1e6
        for label, predictor in entries.items():  # first-call set-up (and compilation) is not part of the figures
            start = time.perf_counter()
            predictor.forward_windows(*batches[0])
            warmups[label] = time.perf_counter() - start
        bounds = {"fp32": entries["torch fp32"], auto: entries[f"torch auto ({auto})"]}
        times: dict[str, list[float]] = {}
        for r in range(args.repeats):
            for label, predictor in entries.items():
                times.setdefault(label, []).append(streamed(predictor, a, b, folder / f"{label.replace(' ', '_')}.tif"))
            for precision, predictor in bounds.items():
                times.setdefault(f"forward bound {precision}", []).append(forward_bound(predictor, batches))
            print(f"round {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        speed = {k: megapixels / statistics.median(v) for k, v in times.items()}
        best = {k: megapixels / min(v) for k, v in times.items()}
        reference = changed(folder / "torch_fp32.tif")
        print(f"\n{scene}, {megapixels:.2f} Mpx, window {args.window}, overlap {args.overlap}, batch {args.batch_size}, "
              f"{n_windows} windows; {device_name(device)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
        print("| entry | Mpx/s | windows/s | against torch fp32 | Mpx/s, best round | against torch fp32 | "
              "change-map pixels differing from torch fp32 |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for label, value in speed.items():
            out = folder / f"{label.replace(' ', '_')}.tif"
            differ = f"{np.mean(changed(out) != reference):.4%}" if out.exists() else "-"
            print(f"| {label} | {value:.3f} | {value / megapixels * n_windows:.1f} | {value / speed['torch fp32']:.2f}x "
                  f"| {best[label]:.3f} | {best[label] / best['torch fp32']:.2f}x | {differ} |")
        if args.compile:
            print(f"compilation (first batch): {warmups['torch fp32 compiled']:.1f} s")

        def ratios(figures: dict[str, float]) -> str:
            fp32 = figures["torch fp32"]
            text = f"{fp32 / figures['onnx fp32']:.2f}x ONNX Runtime, " if "onnx fp32" in figures else ""
            text += f"{fp32 / figures['forward bound fp32']:.2f} of the forward bound"
            if args.compile and "onnx fp32" in figures:
                text += f", compiled {figures['torch fp32 compiled'] / figures['onnx fp32']:.2f}x ONNX Runtime"
            return text

        print(f"PyTorch fp32 {speed['torch fp32']:.3f} Mpx/s: {ratios(speed)}; best rounds: {ratios(best)}")


if __name__ == "__main__":
    main()
