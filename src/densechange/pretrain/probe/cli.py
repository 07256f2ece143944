"""``densechange probe``: score the frozen dense features of any encoder against masks.

    densechange probe encoder=runs/sadl/encoder.safetensors data.root=/data/inria data.split=val
    densechange probe encoder=random data.root=synthetic

The last line printed is ``knn_miou=<f> kmeans_nmi=<f>`` (see :mod:`densechange.pretrain.probe.score`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from densechange.checkpoints import build_normalised_encoder
from densechange.datasets import ImageMaskOptions
from densechange.engine.cli import CommandSpec, parse_command, run_cli
from densechange.engine.distributed import resolve_device
from densechange.pretrain.data import build_labelled_dataset

from densechange.pretrain.probe.config import PROBE_CHOICES, ProbeCommandConfig
from densechange.pretrain.probe.score import ProbeResult, probe_encoder, probe_settings


SPEC = CommandSpec(
    "densechange probe",
    "Score the frozen dense features of an encoder against masks with kNN label transfer and k-means.",
    ProbeCommandConfig,
    required=("encoder", "data.root"),
    choices=PROBE_CHOICES,
    examples=("densechange probe encoder=runs/sadl/encoder.safetensors data.root=/data/inria data.split=val",
              "densechange probe encoder=random data.root=synthetic"),
)


def report(name: str, result: ProbeResult) -> str:
    """Human-readable lines for one probed encoder (the summary line is printed separately)."""
    iou = ", ".join("n/a" if np.isnan(v) else f"{v:.3f}" for v in result.knn_iou)
    return (f"{name}: {result.images} images, {result.pixels} pixels, kNN index {result.knn_index}\n"
            f"  kNN  mIoU {result.knn_miou:.4f}  accuracy {result.knn_accuracy:.4f}  IoU per class [{iou}]\n"
            f"  k-means (K={result.clusters})  NMI {result.kmeans_nmi:.4f}  purity {result.kmeans_purity:.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    d = cfg.data
    encoder, mean, std = build_normalised_encoder(cfg.encoder, in_chans=d.in_chans, mean=d.mean, std=d.std,
                                                  backbone=cfg.model.backbone, neck_channels=cfg.model.neck_channels)
    dataset = build_labelled_dataset(
        d.root, d.split, ImageMaskOptions(crop_size=d.tile_size, seed=cfg.seed, ignore_value=d.ignore_value,
                                          mask_mode=d.mask_mode, num_classes=d.num_classes, one_crop_per_image=True),
        synthetic_images=d.synthetic_images, synthetic_size=d.synthetic_size, synthetic_classes=d.synthetic_classes,
        max_images=d.max_images,
    )
    device = resolve_device(cfg.device)
    result = probe_encoder(encoder.to(device), dataset, num_classes=dataset.num_classes, mean=mean, std=std,
                           settings=probe_settings(cfg.probe), seed=cfg.seed, device=device)
    print(report(cfg.encoder, result))
    print(result.summary())
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
