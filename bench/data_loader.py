"""Samples per second of the training data path: 256² crops of 1024² tiles, PNG against tiled GeoTIFF.

The same image–mask dataset (RGB images, 0/255 masks) is written twice: as PNG, which must be
decoded whole for every crop, and as tiled, compressed GeoTIFF, of which a crop decodes only the
blocks under it. Each is read through ``datasets.ImageMaskDataset`` and a DataLoader with 1 and 2
workers, for one epoch (16 crops per tile). The figures also say how many workers a GPU needs:
workers = images/s of the training step / samples/s of one worker.

    python bench/data_loader.py                    # 12 tiles, batch 8
    python bench/data_loader.py --tiles 32 --workers 1 2 4

The last line is ``<ratio> tiled GeoTIFF / PNG samples/s (<n> workers)`` for the largest worker count.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.datasets import ImageMaskDataset, ImageMaskOptions  # noqa: E402


def write_tiles(root: Path, tiles: int, size: int, fmt: str) -> Path:
    """``tiles`` image–mask pairs of ``size``² as PNG or tiled GeoTIFF (256² blocks, deflate)."""
    rng = np.random.default_rng(0)
    (root / "A").mkdir(parents=True)
    (root / "label").mkdir()
    for i in range(tiles):
        # blocky content compresses like aerial imagery does, unlike pure noise
        coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = np.repeat(np.repeat(coarse, 8, 0), 8, 1) // 2 + rng.integers(0, 128, (size, size, 3), dtype=np.uint8)
        mask = ((coarse[..., 0] > 128).repeat(8, 0).repeat(8, 1) * 255).astype(np.uint8)
        if fmt == "png":
            Image.fromarray(image).save(root / "A" / f"t{i}.png")
            Image.fromarray(mask).save(root / "label" / f"t{i}.png")
            continue
        profile = dict(driver="GTiff", height=size, width=size, dtype="uint8", tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate")
        with rasterio.open(root / "A" / f"t{i}.tif", "w", count=3, **profile) as dst:
            dst.write(np.moveaxis(image, -1, 0))
        with rasterio.open(root / "label" / f"t{i}.tif", "w", count=1, **profile) as dst:
            dst.write(mask, 1)
    return root


def samples_per_s(root: Path, crop: int, workers: int, batch: int) -> float:
    dataset = ImageMaskDataset(root, options=ImageMaskOptions(crop_size=crop, mask_mode="binary255"))
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers, drop_last=True,
                        persistent_workers=False)
    it = iter(loader)
    next(it)  # worker start-up is not part of the figure
    start, count = time.perf_counter(), 0
    for b in it:
        count += b["image"].shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiles", type=int, default=12)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        roots = {fmt: write_tiles(Path(tmp) / fmt, args.tiles, args.size, fmt) for fmt in ("png", "tif")}
        rates: dict[tuple[str, int], float] = {}
        for workers in args.workers:
            for fmt, root in roots.items():
                rates[(fmt, workers)] = samples_per_s(root, args.crop, workers, args.batch)
                print(f"{fmt:>4}, {workers} worker(s): {rates[(fmt, workers)]:.1f} samples/s "
                      f"({args.crop}² crops of {args.size}² tiles, batch {args.batch})", flush=True)
    top = max(args.workers)
    print(f"{rates[('tif', top)] / rates[('png', top)]:.2f} tiled GeoTIFF / PNG samples/s ({top} workers)")


if __name__ == "__main__":
    main()
