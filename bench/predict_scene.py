"""Whole-scene prediction: throughput and peak memory across scene sizes, each in a fresh process.

For each size the script writes a georeferenced GeoTIFF pair (tiled, compressed, uint8 RGB), then
predicts it with ``densechange predict``'s streaming path in a fresh process, so that the peak
resident memory is that size's own. Inside the same process it also sums the time of the
network's window batches, so the share of the time the streaming adds is known.

    python bench/predict_scene.py                                   # 1024, 2048 and 8192, random DeepCL ResNet-18, CPU
    python bench/predict_scene.py --sizes 1024 2048 20000 --device cuda --checkpoint RUN/best.safetensors
    python bench/predict_scene.py --precision bf16 --window 512

Targets: the largest size's peak within 1.10x of the second size's (2048² by default: the first
size that fills whole blocks), and its Mpx/s within 10% of the first size's (a 1024² tile). The
last line is ``<peak ratio> peak ratio (<largest> vs <second>), <speed ratio> Mpx/s ratio
(<largest> vs <first>)``. Speed against ONNX Runtime and the forward bound: ``bench/predict.py``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.models import Encoder  # noqa: E402
from densechange.finetune.checkpoint import load_change_model  # noqa: E402
from densechange.finetune.inference.backend import Predictor  # noqa: E402
from densechange.finetune.inference.predictor import ChangePredictor  # noqa: E402
from densechange.finetune.deepcl.model import ChangeModel  # noqa: E402
from densechange.finetune.inference.scene import block_windows, plan_blocks, windows_to_run  # noqa: E402
from densechange.finetune.inference.streaming import SceneOutputs, predict_scene  # noqa: E402
from densechange.finetune.inference.windows import DEFAULT_WINDOWS, WindowGrid, WindowSettings, batch_for  # noqa: E402


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_scene(path: Path, size: int, seed: int) -> None:
    """A ``size x size`` uint8 RGB GeoTIFF (UTM 33N, 0.5 m), written block by block so the writer stays small."""
    rng = np.random.default_rng(seed)
    profile = dict(driver="GTiff", height=size, width=size, count=3, dtype="uint8", tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate", crs="EPSG:32633", transform=from_origin(500000, 4650000, 0.5, 0.5),
                   BIGTIFF="IF_SAFER")
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 1024):
            h = min(1024, size - top)
            dst.write(rng.integers(0, 256, (3, h, size), dtype=np.uint8), window=Window(0, top, size, h))


def random_model() -> ChangeModel:
    torch.manual_seed(0)
    return ChangeModel(Encoder("resnet18"), mean=[0.5] * 3, std=[0.5] * 3)


def build_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor ``densechange predict`` builds: the model optimised for inference."""
    windows = WindowSettings(args.window, args.overlap, args.margin, args.batch_size)
    model = load_change_model(args.checkpoint)[0] if args.checkpoint else random_model()
    return ChangePredictor(model, windows, device=args.device, precision=args.precision, optimise=True)


def network_alone(predictor: Predictor, windows: int) -> float:
    """Seconds per window of the network on window batches already in memory (the bound of the streaming path)."""
    c, s = predictor.in_chans, predictor.windows.size
    n = predictor.batch(s, s)
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(n, c, s, s, generator=g), torch.rand(n, c, s, s, generator=g)
    batches = max(1, windows // n)
    start = time.perf_counter()
    for _ in range(batches):
        predictor.forward_windows(a, b)
    if predictor.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (batches * n)


def time_network_calls(predictor: Predictor) -> list[float]:
    """Sum the seconds of the network's window batches while the scene streams, in the same run.

    Timed inside the streaming run, the network and the rest (reading, blending, writing) share the
    machine's state, so their ratio holds on a machine whose speed drifts between runs.
    """
    total = [0.0]
    forward = predictor.forward_windows

    def timed(*batch: torch.Tensor) -> object:
        start = time.perf_counter()
        out = forward(*batch)
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        total[0] += time.perf_counter() - start
        return out

    predictor.forward_windows = timed  # type: ignore[method-assign]
    return total


def measure(args: argparse.Namespace, size: int, folder: Path) -> dict:
    predictor = build_predictor(args)
    warm = torch.rand(1, predictor.in_chans, args.window, args.window)
    predictor.forward_windows(warm, warm)  # first-call kernel set-up is not part of the figures
    pa, pb = folder / f"a_{size}.tif", folder / f"b_{size}.tif"
    grid = WindowGrid.for_scene(size, size, predictor.windows, predictor.stride)
    windows = windows_to_run(plan_blocks(grid, block_windows(grid.stride), block_windows(grid.stride)), grid)
    base = rss_mib()
    inside = time_network_calls(predictor)
    stats = predict_scene(predictor, pa, pb, SceneOutputs(folder / f"change_{size}.tif"), progress=False)
    network_seconds = inside[0]  # before the network is timed alone through the same wrapper
    per_window_alone = network_alone(predictor, min(windows, args.alone_windows))
    return {
        "size": size,
        "seconds": stats["seconds"],
        "megapixels_per_s": stats["megapixels_per_s"],
        "windows": windows,
        "grid_windows": len(grid),
        "alone_seconds": per_window_alone * windows,
        "network_seconds": network_seconds,
        "peak_rss_mib": peak_rss_mib(),
        "base_rss_mib": base,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 8192])
    p.add_argument("--window", type=int, default=DEFAULT_WINDOWS.size)
    p.add_argument("--overlap", type=int, default=DEFAULT_WINDOWS.overlap)
    p.add_argument("--margin", type=int, default=DEFAULT_WINDOWS.margin)
    p.add_argument("--batch-size", type=int, help="windows per batch (default: 8 x 256² pixels' worth)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--checkpoint", help="change-model file (default: random DeepCL ResNet-18)")
    p.add_argument("--alone-windows", type=int, default=96, help="windows timed for the network-alone figure")
    p.add_argument("--folder", help="where the scenes are written (default: a temporary folder)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.batch_size = args.batch_size or batch_for(args.window, args.device)
    if args.child is not None:
        print(json.dumps(measure(args, args.child, Path(args.folder))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        runs: list[dict] = []
        for size in args.sizes:
            for date, seed in (("a", 2 * size), ("b", 2 * size + 1)):
                if not (folder / f"{date}_{size}.tif").exists():
                    write_scene(folder / f"{date}_{size}.tif", size, seed)
            cmd = [sys.executable, __file__, "--child", str(size), "--folder", str(folder)] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                if k not in ("sizes", "child", "folder") and v is not None]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            runs.append(r)
            print(f"{size}x{size}: {r['seconds']:.1f} s, {r['megapixels_per_s']:.3f} Mpx/s, {r['windows']} "
                  f"windows ({r['windows'] / r['grid_windows']:.3f} of the grid's {r['grid_windows']}); network alone "
                  f"on them {r['alone_seconds']:.1f} s ({r['alone_seconds'] / r['seconds']:.3f} of the streaming time), "
                  f"in the stream {r['network_seconds']:.1f} s ({r['network_seconds'] / r['seconds']:.3f}); "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB (after set-up {r['base_rss_mib']:.0f} MiB)", flush=True)
    second = runs[1] if len(runs) > 2 else runs[0]
    peak = runs[-1]["peak_rss_mib"] / second["peak_rss_mib"]
    speed = runs[-1]["megapixels_per_s"] / runs[0]["megapixels_per_s"]
    print(f"{peak:.3f} peak ratio ({runs[-1]['size']} vs {second['size']}), {speed:.3f} Mpx/s ratio "
          f"({runs[-1]['size']} vs {runs[0]['size']})")


if __name__ == "__main__":
    main()
