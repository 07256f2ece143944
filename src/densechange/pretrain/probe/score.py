"""Is my pretraining working? Score the frozen dense features of any encoder against masks.

Two probes of the stride-4 features that train nothing (no linear head, no finetuning), on a
labelled image-mask set:

- **kNN label transfer**: every selected pixel of a held-out image takes the similarity-weighted
  vote of its ``k`` nearest labelled pixels of the *other* images (exact cosine search, faiss
  ``IndexFlatIP`` on L2-normalised features; images split into ``probe.folds`` seeded folds, each
  labelled from the others). Reported: mIoU over the classes present.
- **k-means**: spherical k-means of all selected pixels (faiss, no subsampling), compared with the
  masks: cluster purity and normalised mutual information.

Pixels are subsampled explicitly (``probe.pixels_per_image``, seeded; see
:mod:`densechange.pretrain.probe.features` for how labels meet the stride-4 grid).

    densechange probe encoder=runs/sadl/encoder.safetensors data.root=/data/inria data.split=val
    densechange probe encoder=random data.root=synthetic

The last line printed is ``knn_miou=<f> kmeans_nmi=<f>``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from densechange.datasets.errors import DatasetError

from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.features import PixelSet, extract_pixels
from densechange.pretrain.probe.metrics import contingency, iou_per_class, mean_iou, nmi, purity
from densechange.pretrain.probe.search import faiss_gpu_available, kmeans_clusters, knn_label_transfer

__all__ = ["ProbeResult", "probe_settings", "score_pixels", "probe_encoder"]


@dataclass
class ProbeResult:
    """Scores of one probe run; ``knn_iou`` is per class (NaN for a class absent from truth and prediction)."""

    knn_miou: float
    knn_accuracy: float
    knn_iou: list[float]
    kmeans_nmi: float
    kmeans_purity: float
    clusters: int
    pixels: int
    images: int
    knn_index: str = "exact"

    def metrics(self, prefix: str = "") -> dict[str, float | str]:
        """Flat scores for a metrics log, with the pixel count and the kNN index they came from."""
        keys = ("knn_miou", "knn_accuracy", "kmeans_nmi", "kmeans_purity")
        return {**{f"{prefix}{k}": float(getattr(self, k)) for k in keys}, f"{prefix}pixels": self.pixels,
                f"{prefix}knn_index": self.knn_index}

    def summary(self) -> str:
        return f"knn_miou={self.knn_miou:.4f} kmeans_nmi={self.kmeans_nmi:.4f}"


def probe_settings(section: Any) -> ProbeConfig:
    """The scoring settings of a config section (extra keys of the section are left out), checked as they are built."""
    return ProbeConfig(**{f.name: getattr(section, f.name) for f in fields(ProbeConfig)})


def score_pixels(pixels: PixelSet, num_classes: int, settings: ProbeConfig, *, seed: int = 0, use_gpu: bool | None = None) -> ProbeResult:
    """kNN label transfer and k-means scores of already extracted pixel features.

    Args:
        pixels: features ``(N, D)``, labels ``(N,)`` in ``[0, num_classes)``, image index ``(N,)``.
        num_classes: classes of the masks.
        settings: k, temperature, folds, clusters, kmeans_iters.
        use_gpu: faiss on GPU; None: when faiss has GPU support and sees a GPU.
    """
    if len(pixels) == 0:
        raise DatasetError("the probe selected no pixels: every mask pixel is ignored. Check the ignore value of the probe data.")
    if pixels.labels.min() < 0 or pixels.labels.max() >= num_classes:
        raise DatasetError(f"probe labels must lie in [0, {num_classes}); got {pixels.labels.min()}..{pixels.labels.max()}.")
    gpu = faiss_gpu_available() if use_gpu is None else use_gpu
    pred, index = knn_label_transfer(pixels.features, pixels.labels, pixels.images, num_classes=num_classes,
                                     settings=settings, seed=seed, use_gpu=gpu)
    confusion = contingency(pixels.labels, pred, num_classes, num_classes)
    k = settings.clusters or num_classes
    assign, _ = kmeans_clusters(pixels.features, k, iters=settings.kmeans_iters, seed=seed, spherical=True, use_gpu=gpu)
    table = contingency(pixels.labels, assign, num_classes, k)
    return ProbeResult(
        knn_miou=mean_iou(confusion),
        knn_accuracy=float(np.trace(confusion) / confusion.sum()),
        knn_iou=[float(v) for v in iou_per_class(confusion)],
        kmeans_nmi=nmi(table),
        kmeans_purity=purity(table),
        clusters=k,
        pixels=len(pixels),
        images=int(np.unique(pixels.images).size),
        knn_index=index,
    )


def probe_encoder(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    settings: ProbeConfig | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ProbeResult | None:
    """Extract seeded pixel features of ``encoder`` on ``dataset`` and score them (see :func:`score_pixels`).

    Collective under ``torchrun``: every process featurises its shard of the images, at most
    ``settings.max_pixels`` pixels are gathered on rank 0, which scores them and gets the result;
    the other processes get None.

    Example:
        >>> enc, _ = build_encoder("random")
        >>> ds = SyntheticImageMaskDataset(8, size=64)
        >>> probe_encoder(enc, ds, num_classes=2, mean=[0.5] * 3, std=[0.5] * 3).summary()
        'knn_miou=... kmeans_nmi=...'
    """
    settings = settings or ProbeConfig()
    pixels = extract_pixels(encoder, dataset, mean=mean, std=std, settings=settings, seed=seed, device=device)
    return None if pixels is None else score_pixels(pixels, num_classes, settings, seed=seed)
