"""How long rank 0 works at an epoch end while the other ranks wait, at the default sample limits.

Under ``torchrun`` every rank featurises its shard of the probe and pseudo-mask images; then rank 0
alone scores the gathered sample (kNN label transfer and k-means) or fits the pseudo-mask
centroids, and the other ranks wait in a broadcast. That wait must stay well inside the
process-group timeout (``trainer.dist_timeout_s``). The sample is bounded (``probe.max_pixels``,
``pseudo.max_pixels``), so this script times the rank-0 part on a bounded sample of its size:
256-d features (the FPN width) drawn around a few class centres, 1000 pixels per image.

    python bench/epoch_end.py                     # the defaults: 100000 pixels, exact kNN up to 50000
    python bench/epoch_end.py --pixels 20000

The last line is ``<seconds> s of rank-0 work (longest part), dist_timeout_s=<default>``.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.engine.config import TrainerConfig  # noqa: E402
from densechange.pretrain.config import PseudoConfig  # noqa: E402
from densechange.pretrain.probe.config import ProbeConfig  # noqa: E402
from densechange.pretrain.probe.features import PixelSet  # noqa: E402
from densechange.pretrain.probe.score import score_pixels  # noqa: E402
from densechange.pretrain.pseudo.masks import kmeans_centroids  # noqa: E402


def pixels(n: int, dim: int, classes: int, per_image: int, seed: int = 0) -> PixelSet:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    feats = centres[labels] + rng.normal(0, 1.5, (n, dim)).astype(np.float32)
    return PixelSet(feats, labels, np.arange(n) // per_image)


def timed(label: str, fn) -> float:
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s{out}")
    return seconds


def main() -> None:
    probe_default, pseudo_default = ProbeConfig(), PseudoConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pixels", type=int, default=probe_default.max_pixels)
    p.add_argument("--exact-max", type=int, default=probe_default.exact_max)
    p.add_argument("--pseudo-pixels", type=int, default=pseudo_default.max_pixels)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--clusters", type=int, default=6)
    args = p.parse_args()
    print(f"{torch.get_num_threads()} threads; probe.max_pixels={args.pixels}, probe.exact_max={args.exact_max}, "
          f"pseudo.max_pixels={args.pseudo_pixels}, {args.dim}-d features")

    settings = replace(probe_default, exact_max=args.exact_max)
    sample = pixels(args.pixels, args.dim, args.classes, probe_default.pixels_per_image)
    at_limit = pixels(min(args.exact_max, args.pixels), args.dim, args.classes, probe_default.pixels_per_image)

    def probe(px: PixelSet) -> str:
        result = score_pixels(px, args.classes, settings, use_gpu=False)
        return f" (kNN index {result.knn_index}; mIoU {result.knn_miou:.3f})"

    fitting = pixels(args.pseudo_pixels, args.dim, args.clusters, pseudo_default.pixels_per_image).features

    def pseudo() -> str:
        kmeans_centroids(fitting, args.clusters, True, pseudo_default.iters, 0)
        return ""

    parts = [
        timed(f"probe, {len(sample)} pixels", lambda: probe(sample)),
        timed(f"probe, {len(at_limit)} pixels (the largest exact index)", lambda: probe(at_limit)),
        timed(f"pseudo-mask k-means, {args.pseudo_pixels} pixels, K={args.clusters}", pseudo),
    ]
    print(f"{max(parts):.1f} s of rank-0 work (longest part), dist_timeout_s={TrainerConfig().dist_timeout_s}")


if __name__ == "__main__":
    main()
