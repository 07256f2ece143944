"""Pseudo-masks of one scene: time and peak memory at two scene sizes.

For each size the script writes a tiled, compressed uint8 RGB GeoTIFF (block by block, with
structure at several scales so that k-means has something to find), then makes its pseudo-masks
(``data.masks=pseudo``'s generation 0: colour-texture k-means, or ``--features encoder`` for a
refresh from a random ResNet-18 + FPN) in a fresh process, so that the peak resident memory is
that size's own. The masks are made window by window and written as tiled GeoTIFF pieces, so the
peak should not grow with the scene and the time should grow with its area.

    python bench/pseudo_masks.py                          # 2048 and 8192, colour-texture, CPU
    python bench/pseudo_masks.py --sizes 2048 20000 --features encoder --device cuda
    python bench/pseudo_masks.py --repeat 2               # each size twice: the fastest time, the highest peak

Targets: the largest size's peak within 1.10x of the smallest's, and the time per pixel the same at
both sizes (time linear in area). The CPU time of the process is reported beside the wall time: on
a shared machine it is the steadier of the two. The last line is
``<peak ratio> peak ratio (<big> vs <small>), <ratio> time per pixel ratio (<ratio> in CPU time)``.
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

from densechange.pretrain.data import ImageFolder  # noqa: E402
from densechange.pretrain.pseudo.config import PseudoConfig  # noqa: E402
from densechange.pretrain.pseudo.masks import colour_texture, compute_pseudo_masks, encoder_featuriser  # noqa: E402


def rss_mib() -> float:
    import os

    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_scene(path: Path, size: int, seed: int) -> None:
    """A ``size x size`` uint8 RGB GeoTIFF: coarse patches of colour plus fine texture, written 512 rows at a time."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(30, 226, (6, 3)).astype(np.int16)
    profile = dict(driver="GTiff", height=size, width=size, count=3, dtype="uint8", tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate", crs="EPSG:32633", transform=from_origin(500000, 4650000, 0.5, 0.5),
                   BIGTIFF="IF_SAFER")
    cell = 32
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 512):
            h = min(512, size - top)
            patches = rng.integers(0, 6, (-(-h // cell), -(-size // cell)))
            labels = patches.repeat(cell, 0).repeat(cell, 1)[:h, :size]
            strip = palette[labels] + rng.integers(-20, 21, (h, size, 3))
            dst.write(np.clip(strip, 0, 255).astype(np.uint8).transpose(2, 0, 1), window=Window(0, top, size, h))


def featuriser(args: argparse.Namespace):
    """Colour and texture (Euclidean k-means) or a seeded ResNet-18's features (cosine k-means)."""
    if args.features == "colour":
        return colour_texture(args.window)
    from densechange.models import Encoder

    torch.manual_seed(0)
    encoder = Encoder("resnet18").to(args.device).eval()
    return encoder_featuriser(encoder, [0.5] * 3, [0.5] * 3, halo=args.halo)


def measure(args: argparse.Namespace, size: int, folder: Path) -> dict:
    torch.set_num_threads(args.threads) if args.threads else None
    source = ImageFolder(folder / f"scene_{size}")
    featurise = featuriser(args)
    warm = ImageFolder(folder / "scene_warm")  # first-call set-up (thread pools, kernels) is not part of the figures
    compute_pseudo_masks(warm, featurise, folder / f"masks_warm_{size}", PseudoConfig(clusters=args.clusters, tile=args.tile),
                         device=args.device)
    base = rss_mib()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    settings = PseudoConfig(clusters=args.clusters, pixels_per_image=args.pixels_per_window, max_pixels=args.max_pixels,
                            iters=args.iters, batch_size=args.batch_size, tile=args.tile)
    store = compute_pseudo_masks(source, featurise, folder / f"masks_{size}", settings, seed=0, device=args.device)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    used = np.bincount(store.read_window(0, 0, 0, 512, 512).ravel(), minlength=256)[: args.clusters]
    return {"size": size, "seconds": seconds, "cpu_seconds": cpu_seconds, "megapixels_per_s": size * size / 1e6 / seconds,
            "pieces": len(store.pieces), "fitting_pixels": store.meta["fitting_pixels"],
            "clusters_seen": int((used > 0).sum()), "peak_rss_mib": peak_rss_mib(), "base_rss_mib": base}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    p.add_argument("--features", default="colour", choices=("colour", "encoder"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--window", type=int, default=7, help="colour-texture box (pseudo.window)")
    p.add_argument("--halo", type=int, default=32, help="encoder halo (pseudo.halo)")
    p.add_argument("--tile", type=int, default=256, help="window side (pseudo.tile)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per batch (pseudo.batch_size)")
    p.add_argument("--clusters", type=int, default=6)
    p.add_argument("--pixels-per-window", type=int, default=256)
    p.add_argument("--max-pixels", type=int, default=100_000)
    p.add_argument("--iters", type=int, default=25)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--repeat", type=int, default=1, help="fresh processes per size: the fastest time and the highest peak")
    p.add_argument("--folder", help="where the scenes and masks are written (default: a temporary folder)")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args, args.child, Path(args.folder))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        runs = []
        if not (folder / "scene_warm" / "A" / "scene.tif").exists():
            (folder / "scene_warm" / "A").mkdir(parents=True, exist_ok=True)
            write_scene(folder / "scene_warm" / "A" / "scene.tif", 512, seed=1)
        for size in args.sizes:
            scene = folder / f"scene_{size}" / "A" / "scene.tif"
            if not scene.exists():
                scene.parent.mkdir(parents=True, exist_ok=True)
                write_scene(scene, size, seed=size)
            cmd = [sys.executable, __file__, "--child", str(size), "--folder", str(folder)] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                if k not in ("sizes", "child", "folder", "repeat") and v is not None]
            tries = [json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
                     for _ in range(max(1, args.repeat))]
            r = min(tries, key=lambda t: t["seconds"])  # the least disturbed run of a shared machine
            r["peak_rss_mib"] = max(t["peak_rss_mib"] for t in tries)
            r["cpu_seconds"] = min(t["cpu_seconds"] for t in tries)
            runs.append(r)
            print(f"{args.features} {size}x{size}: {r['seconds']:.1f} s ({r['cpu_seconds']:.1f} s of CPU), "
                  f"{r['megapixels_per_s']:.2f} Mpx/s, "
                  f"{r['pieces']} windows, {r['fitting_pixels']} fitting pixels, peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"(after set-up {r['base_rss_mib']:.0f} MiB)", flush=True)
    peak = runs[-1]["peak_rss_mib"] / runs[0]["peak_rss_mib"]
    def per_pixel(key: str) -> float:
        return (runs[-1][key] / runs[-1]["size"] ** 2) / (runs[0][key] / runs[0]["size"] ** 2)

    print(f"{peak:.3f} peak ratio ({runs[-1]['size']} vs {runs[0]['size']}), {per_pixel('seconds'):.3f} time per pixel "
          f"ratio ({per_pixel('cpu_seconds'):.3f} in CPU time)")


if __name__ == "__main__":
    main()
