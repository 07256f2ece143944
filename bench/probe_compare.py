"""Dense-probe comparison of encoders on one labelled image-mask set.

Probes a randomly initialised encoder, the ImageNet encoder (only when its weights are already in
the local cache: nothing is downloaded) and any pretrained encoders given with ``--encoder``, with
the same seeded pixels and settings, and prints one table row per encoder.

    python bench/probe_compare.py --data /data/inria_val --encoder runs/sadl/encoder.safetensors
    python bench/probe_compare.py --data synthetic --images 16 --size 128

The last line is the summary figure: the best kNN mIoU and its gain over the random encoder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from densechange.checkpoints import build_normalised_encoder  # noqa: E402
from densechange.checkpoints.download import entry_cache_path  # noqa: E402
from densechange.checkpoints.registry import find_entry  # noqa: E402
from densechange.datasets import ImageMaskOptions  # noqa: E402
from densechange.pretrain.data import build_labelled_dataset  # noqa: E402
from densechange.pretrain.probe.config import ProbeConfig  # noqa: E402
from densechange.pretrain.probe.score import ProbeResult, probe_encoder  # noqa: E402


def imagenet_available(backbone: str) -> str | None:
    """None when the ImageNet weights of ``backbone`` are cached locally, else why they are skipped."""
    entry = find_entry(f"{backbone}_imagenet")
    if entry is None:
        return f"no registry entry {backbone}_imagenet"
    if not entry_cache_path(entry).is_file():
        return (f"{entry.name} is not in the local cache (no download here); run "
                f"`densechange weights download {entry.name}` where there is internet")
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="synthetic", help="labelled image-mask folder, or 'synthetic'")
    p.add_argument("--split", default=None)
    p.add_argument("--encoder", action="append", default=[], help="pretrained encoder (path, registry name or URL); repeatable")
    p.add_argument("--backbone", default="resnet18", help="architecture of the random and ImageNet encoders")
    p.add_argument("--images", type=int, default=16, help="synthetic images (--data synthetic) or the first N images")
    p.add_argument("--size", type=int, default=128, help="synthetic image size; crop size for folders (0: whole images)")
    p.add_argument("--pixels", type=int, default=500, help="pixels per image")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--clusters", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    options = ImageMaskOptions(crop_size=args.size or None, seed=args.seed, one_crop_per_image=True)
    dataset = build_labelled_dataset(args.data, args.split, options, synthetic_images=args.images,
                                     synthetic_size=args.size, max_images=args.images)
    num_classes = dataset.num_classes
    samples = [dataset[i] for i in range(len(dataset))]  # read once, probed by every encoder
    settings = ProbeConfig(pixels_per_image=args.pixels, k=args.k, clusters=args.clusters)

    candidates = ["random"]
    why_not = imagenet_available(args.backbone)
    if why_not is None:
        candidates.append("imagenet")
    else:
        print(f"imagenet: skipped ({why_not})")
    if not args.encoder:
        print("pretrained: none given (pass --encoder RUN/encoder.safetensors)")
    candidates += args.encoder

    results: dict[str, ProbeResult] = {}
    for source in candidates:
        torch.manual_seed(args.seed)  # the same random encoder on every run
        encoder, mean, std = build_normalised_encoder(source, in_chans=3, mean=None, std=None, backbone=args.backbone)
        results[source] = probe_encoder(encoder.to(args.device), samples, num_classes=num_classes, mean=mean, std=std,
                                        settings=settings, seed=args.seed, device=args.device)

    width = max(len(s) for s in results) + 2
    print(f"data={args.data} images={len(samples)} classes={num_classes} pixels/image={args.pixels} k={args.k}")
    print(f"{'encoder':<{width}} {'kNN mIoU':>9} {'kNN acc':>8} {'NMI':>7} {'purity':>7} {'pixels':>7}")
    for name, r in results.items():
        print(f"{name:<{width}} {r.knn_miou:>9.4f} {r.knn_accuracy:>8.4f} {r.kmeans_nmi:>7.4f} {r.kmeans_purity:>7.4f} {r.pixels:>7d}")
    best = max(results, key=lambda n: results[n].knn_miou)
    gain = results[best].knn_miou - results["random"].knn_miou
    print(f"best knn_miou={results[best].knn_miou:.4f} ({best}), {gain:+.4f} over random")


if __name__ == "__main__":
    main()
