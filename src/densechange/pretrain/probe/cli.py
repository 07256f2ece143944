"""``densechange probe``: score the frozen dense features of any encoder against masks, or on change pairs.

    densechange probe encoder=runs/sadl/encoder.safetensors data.root=/data/inria data.split=val
    densechange probe encoder=random data.root=synthetic
    densechange probe task=change encoder=runs/sadl/encoder.safetensors data.root=/data/levir

Under ``torchrun`` (``torchrun --nproc_per_node=N -m densechange.pretrain.probe ...``) every process
featurises its shard of the images or pairs and rank 0 prints. The last line printed is
``knn_miou=<f> kmeans_nmi=<f>`` (see :mod:`densechange.pretrain.probe.score`), or, with ``task=change``,
``change_f1=<f> change_auroc=<f>`` (see :mod:`densechange.pretrain.probe.change`).
``encoder=bands`` scores the input bands themselves (:class:`densechange.models.BandMeans`): the
baseline an encoder has to beat.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

import torch
from torch import nn

from densechange.checkpoints import build_normalised_encoder, resolve_normalisation
from densechange.datasets import ChangeOptions, ImageMaskOptions
from densechange.engine.change_sets import check_bands, chosen_bands
from densechange.engine.cli import CommandSpec, parse_command, run_cli
from densechange.engine.distributed import init_distributed, shutdown
from densechange.models import BandMeans
from densechange.pretrain.data import build_change_probe_pairs, build_labelled_dataset

from densechange.pretrain.probe.change import ChangeProbeResult, probe_change
from densechange.pretrain.probe.config import PROBE_CHOICES, ProbeCommandConfig
from densechange.pretrain.probe.score import ProbeResult, probe_encoder, probe_settings

BANDS = "bands"  # encoder=bands: the input bands themselves, no network


SPEC = CommandSpec(
    "densechange probe",
    "Score the frozen dense features of an encoder against masks with kNN label transfer and k-means, or (task=change) "
    "for change detection with a head fitted on sampled cells of change pairs.",
    ProbeCommandConfig,
    required=("encoder", "data.root"),
    choices=PROBE_CHOICES,
    examples=("densechange probe encoder=runs/sadl/encoder.safetensors data.root=/data/inria data.split=val",
              "densechange probe encoder=random data.root=synthetic",
              "densechange probe task=change encoder=runs/sadl/encoder.safetensors data.root=/data/levir"),
)


def report(name: str, result: ProbeResult) -> str:
    """Human-readable lines for one probed encoder (the summary line is printed separately)."""
    iou = ", ".join("n/a" if np.isnan(v) else f"{v:.3f}" for v in result.knn_iou)
    return (f"{name}: {result.images} images, {result.pixels} pixels, kNN index {result.knn_index}\n"
            f"  kNN  mIoU {result.knn_miou:.4f}  accuracy {result.knn_accuracy:.4f}  IoU per class [{iou}]\n"
            f"  k-means (K={result.clusters})  NMI {result.kmeans_nmi:.4f}  purity {result.kmeans_purity:.4f}")


def change_report(name: str, r: ChangeProbeResult) -> str:
    """Human-readable lines for one change-probed encoder (the summary line is printed separately)."""
    return (f"{name}: {r.train_pairs} training samples ({r.train_cells[0]} unchanged + {r.train_cells[1]} changed cells "
            f"sampled), {r.test_pairs} test samples ({r.test_cells} cells), head {r.head}\n"
            f"  change  F1 {r.f1:.4f}  precision {r.precision:.4f}  recall {r.recall:.4f}  IoU {r.iou:.4f}  "
            f"AUROC {r.auroc:.4f}")


def probed_encoder(cfg: ProbeCommandConfig) -> tuple[nn.Module, list[float], list[float]]:
    """The encoder ``cfg.encoder`` names (``bands``: the input bands) and the statistics to feed it."""
    d = cfg.data
    if cfg.encoder == BANDS:
        mean, std = resolve_normalisation(d.in_chans, d.mean, d.std, None)
        return BandMeans(d.in_chans), mean, std
    return build_normalised_encoder(cfg.encoder, in_chans=d.in_chans, mean=d.mean, std=d.std,
                                    backbone=cfg.model.backbone, neck_channels=cfg.model.neck_channels)


def run_change(cfg: ProbeCommandConfig, encoder: nn.Module, mean: list[float], std: list[float],
               device: torch.device) -> ChangeProbeResult:
    """``task=change``: the head trained on ``data.split`` (default train), scored on ``data.test_split``."""
    d = cfg.data
    options = ChangeOptions(crop_size=d.tile_size, seed=cfg.seed, ignore_value=d.ignore_value,
                            skip_incomplete=d.skip_incomplete, bands=chosen_bands(d))
    train, test = build_change_probe_pairs(d.root, d.split, d.test_split, options, layout=d.layout,
                                           synthetic_pairs=d.synthetic_images, synthetic_size=d.synthetic_size,
                                           max_pairs=d.max_images)
    check_bands(train, d.in_chans)
    return probe_change(encoder.to(device), train, test, mean=mean, std=std, settings=probe_settings(cfg.probe),
                        seed=cfg.seed, device=device)


def run_segmentation(cfg: ProbeCommandConfig, encoder: nn.Module, mean: list[float], std: list[float],
                     device: torch.device) -> ProbeResult | None:
    """``task=segmentation``: kNN and k-means against the masks of ``data.root`` (the result on rank 0 only)."""
    d = cfg.data
    dataset = build_labelled_dataset(
        d.root, d.split, ImageMaskOptions(crop_size=d.tile_size, seed=cfg.seed, ignore_value=d.ignore_value,
                                          mask_mode=d.mask_mode, num_classes=d.num_classes, one_crop_per_image=True),
        synthetic_images=d.synthetic_images, synthetic_size=d.synthetic_size, synthetic_classes=d.synthetic_classes,
        max_images=d.max_images,
    )
    return probe_encoder(encoder.to(device), dataset, num_classes=dataset.num_classes, mean=mean, std=std,
                         settings=probe_settings(cfg.probe), seed=cfg.seed, device=device)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_command(SPEC, argv)
    if cfg is None:  # --help or --print-config
        return 0
    dist = init_distributed(cfg.device)
    try:
        encoder, mean, std = probed_encoder(cfg)
        if cfg.task == "change":
            change = run_change(cfg, encoder, mean, std, dist.device)
            lines = [change_report(cfg.encoder, change), change.summary()]
        else:
            result = run_segmentation(cfg, encoder, mean, std, dist.device)
            lines = [report(cfg.encoder, result), result.summary()] if result is not None else []
        if dist.is_main:
            print("\n".join(lines))
    finally:
        shutdown()
    return 0


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
