"""How much the embedded synthetic data look like the real samples, in a few numbers.

    python bench/synthetic_stats.py [--shared ../shared/data] [--n 24] [--size 256]

For the synthetic generator and, when present, the real LEVIR-CD and Inria samples, prints:

- building share of the image-mask scenes, change share of the change pairs, and the share of the
  changed pixels that are building changes (LEVIR-CD labels building changes only);
- colour-only building IoU: kNN (k=15) label transfer on each pixel's standardised RGB and its
  3x3 mean, each image labelled from the others. High means a detector needs no shape or context;
- pseudo-change strength: on unchanged pixels, the mean absolute difference of the two dates after
  per-image standardisation, and its ratio to the same figure on changed pixels (lower ratio:
  real changes stand out less from pseudo-changes);
- texture: standard deviation of the Laplacian of the grey image over its standard deviation.

The last line is ``colour_iou=<synthetic> pseudo_ratio=<synthetic>``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.datasets.synthetic.samples import SyntheticChangeDataset, SyntheticImageMaskDataset  # noqa: E402


def _std(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-6)


def _box3(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    return sum(p[i : i + x.shape[0], j : j + x.shape[1]] for i in range(3) for j in range(3)) / 9


def colour_iou(images: list[np.ndarray], masks: list[np.ndarray], per_image: int = 1500, k: int = 15) -> float:
    """Building IoU of kNN label transfer on colour features, each image labelled from the others."""
    rng = np.random.default_rng(0)
    feats, labels = [], []
    for img, mask in zip(images, masks):
        f = np.concatenate([_std(img), _box3(_std(img))], 2).reshape(-1, 6)
        idx = rng.choice(f.shape[0], per_image, replace=False)
        feats.append(f[idx].astype(np.float32))
        labels.append(mask.reshape(-1)[idx].astype(bool))
    tp = fp = fn = 0
    for i in range(len(images)):
        train_f = np.concatenate([f for j, f in enumerate(feats) if j != i])
        train_l = np.concatenate([m for j, m in enumerate(labels) if j != i])
        for chunk in np.array_split(np.arange(per_image), 6):
            q = feats[i][chunk]
            d = (q**2).sum(1)[:, None] - 2 * q @ train_f.T + (train_f**2).sum(1)[None]
            nn = np.argpartition(d, k, axis=1)[:, :k]
            pred = train_l[nn].mean(1) > 0.5
            truth = labels[i][chunk]
            tp += int((pred & truth).sum())
            fp += int((pred & ~truth).sum())
            fn += int((~pred & truth).sum())
    return tp / max(tp + fp + fn, 1)


def pseudo_change(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """Mean standardised difference on unchanged pixels, and its ratio to that on changed pixels."""
    un, ch = [], []
    for a, b, change in pairs:
        diff = np.abs(_std(a) - _std(b)).mean(2)
        un.append(diff[change == 0].mean())
        if change.any():
            ch.append(diff[change > 0].mean())
    return float(np.mean(un)), float(np.mean(un) / np.mean(ch))


def texture(images: list[np.ndarray]) -> float:
    vals = []
    for img in images:
        g = img.astype(np.float64).mean(2)
        lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
        vals.append(lap.std() / (g.std() + 1e-6))
    return float(np.mean(vals))


def _read(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


def _read_mask(path: Path) -> np.ndarray:
    return (np.array(Image.open(path).convert("L")) > 0).astype(np.uint8)


def report(name: str, images, masks, pairs, building_change_share: float | None) -> tuple[float, float]:
    iou = colour_iou(images, masks)
    un, ratio = pseudo_change(pairs)
    share = np.mean([m.mean() for m in masks])
    change = np.mean([c.mean() for _, _, c in pairs])
    bshare = "n/a" if building_change_share is None else f"{building_change_share:.2f}"
    print(f"{name:10s} buildings {share:.3f}  change {change:.3f}  building share of change {bshare}  "
          f"colour-only building IoU {iou:.3f}  unchanged diff {un:.3f}  unchanged/changed {ratio:.2f}  "
          f"texture {texture(images):.2f}")
    return iou, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    scenes = SyntheticImageMaskDataset(args.n, args.size, seed=7)
    images, masks = zip(*(scenes.arrays(i) for i in range(args.n)))
    change_ds = SyntheticChangeDataset(args.n, args.size, seed=8)
    pairs = [change_ds.arrays(i) for i in range(args.n)]
    shares = []
    for i in range(args.n):
        from densechange.datasets.synthetic.samples import _child_seed, render_scene

        a_cls = render_scene(_child_seed(8, i), args.size)[1]
        change = pairs[i][2]
        if change.any():
            shares.append(((a_cls == 1) & (change > 0)).sum() / change.sum())
    result = report("synthetic", list(images), list(masks), pairs, None)
    print(f"           building pixels of the first date among changed pixels: {np.mean(shares):.2f}")
    shared = Path(args.shared)
    inria, levir = shared / "inria-256", shared / "levir-cd-256"
    if inria.is_dir() and levir.is_dir():
        names = sorted(p.stem for p in (inria / "A").glob("*.png"))
        real_images = [_read(inria / "A" / f"{n}.png") for n in names]
        real_masks = [_read_mask(inria / "label" / f"{n}.png") for n in names]
        lnames = sorted(p.stem for p in (levir / "A").glob("*.png"))
        real_pairs = [(_read(levir / "A" / f"{n}.png"), _read(levir / "B" / f"{n}.png"),
                       _read_mask(levir / "label" / f"{n}.png")) for n in lnames]
        report("real", real_images, real_masks, real_pairs, 1.0)
        print("           (real: buildings and texture of Inria-256, change figures of LEVIR-CD-256)")
    print(f"colour_iou={result[0]:.3f} pseudo_ratio={result[1]:.3f}")


if __name__ == "__main__":
    main()
