"""Change polygons at scene scale: peak memory and time per pixel of ``densechange vectorize`` across sizes.

For each size the script writes a tiled, compressed GeoTIFF change map of the same change density
(a seeded 1024² tile of blobs, rings and lines, flipped differently in each place, so regions cross
every block seam), then vectorises it to a GeoPackage in a fresh process, so that the peak resident
memory is that size's own. The child also reports its resident memory after importing the toolkit,
so the growth due to the scene is known apart from the libraries.

    python bench/vectorize.py                          # 4096 and 16384
    python bench/vectorize.py --sizes 2048 8192 --block 1024

Targets: the largest size's peak within 1.10x of the smallest's, and its time per pixel about the
same. The last line is ``<peak ratio> peak ratio (<largest> vs <smallest>), <time ratio> s/px ratio``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from densechange.engine.precision import cpu_model

TILE = 1024
CHILD = """
import json, resource, sys, time
from pathlib import Path
from densechange.finetune.vector.options import VectorOptions
from densechange.finetune.vector.vectorize import Inputs, vectorize
setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
summary = vectorize(Inputs(Path(sys.argv[1])), VectorOptions(block=int(sys.argv[3])), Path(sys.argv[2]))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_kib": peak, "setup_kib": setup, "features": summary.features,
                  "changed": summary.changed_pixels}))
"""


def tile(seed: int = 0) -> np.ndarray:
    """A 1024² tile of change: disks, rings with holes, short diagonal strokes and single pixels.

    No region spans the scene: one that did would be held whole until its last block (its outline is
    the output), which measures that region, not the streaming.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:TILE, :TILE]
    out = np.zeros((TILE, TILE), bool)
    for _ in range(260):
        cy, cx, r = rng.integers(0, TILE), rng.integers(0, TILE), rng.integers(2, 14)
        d = (yy - cy) ** 2 + (xx - cx) ** 2
        out |= (d <= r * r) & ((d > (r // 2) ** 2) if rng.random() < 0.3 else True)
    for _ in range(60):  # strokes of 2 pixels' width and up to 150 pixels' length, crossing seams
        cy, cx, length = rng.integers(0, TILE), rng.integers(0, TILE), rng.integers(20, 150)
        t = np.arange(length)
        rows, cols = np.clip(cy + t, 0, TILE - 1), np.clip(cx + t, 0, TILE - 1)
        out[rows, cols] = True
        out[rows, np.clip(cols + 1, 0, TILE - 1)] = True
    out |= rng.random((TILE, TILE)) < 0.002
    return out


def write_scene(path: Path, size: int) -> None:
    base = tile()
    flips = [base, base[::-1], base[:, ::-1], base[::-1, ::-1]]
    profile = dict(driver="GTiff", height=size, width=size, count=1, dtype="uint8", crs="EPSG:32631",
                   transform=from_origin(500000.0, 4000000.0, 0.5, 0.5), tiled=True, blockxsize=256,
                   blockysize=256, compress="deflate", nodata=1)
    with rasterio.open(path, "w", **profile) as dst:
        for i, y in enumerate(range(0, size, TILE)):
            for j, x in enumerate(range(0, size, TILE)):
                dst.write(flips[(i * 3 + j) % 4].astype(np.uint8) * 255, 1, window=Window(x, y, TILE, TILE))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    p.add_argument("--block", type=int, default=1024)
    args = p.parse_args()
    src = Path(__file__).resolve().parents[1] / "src"
    print(f"{cpu_model()}, block {args.block}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            scene, out = Path(folder) / f"change_{size}.tif", Path(folder) / f"changes_{size}.gpkg"
            write_scene(scene, size)
            run = subprocess.run([sys.executable, "-c", CHILD, str(scene), str(out), str(args.block)], check=True,
                                 capture_output=True, text=True, env={"PYTHONPATH": str(src), "PATH": ""})
            r = json.loads(run.stdout.strip().splitlines()[-1])
            r["s_per_mpx"] = r["seconds"] / (size * size / 1e6)
            results[size] = r
            print(f"{size}x{size}: {r['seconds']:.1f} s ({r['s_per_mpx']:.3f} s/Mpx), {r['features']:,} polygons, "
                  f"{r['changed'] / size / size:.3f} changed; peak RSS {r['peak_kib'] / 1024:.0f} MiB "
                  f"(after imports {r['setup_kib'] / 1024:.0f} MiB, growth {(r['peak_kib'] - r['setup_kib']) / 1024:.0f} MiB)",
                  flush=True)
            scene.unlink()
            out.unlink()
    small, large = min(results), max(results)
    peak = results[large]["peak_kib"] / results[small]["peak_kib"]
    speed = results[large]["s_per_mpx"] / results[small]["s_per_mpx"]
    print(f"{peak:.3f} peak ratio ({large} vs {small}), {speed:.3f} s/px ratio ({large} vs {small})")


if __name__ == "__main__":
    main()
