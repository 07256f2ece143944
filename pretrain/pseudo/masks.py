"""Pseudo-masks for pretraining without labels: k-means clusters of per-pixel features.

SaDL needs a class map to balance its point sampling and to know what to push apart. Without
masks, the classes are clusters of per-pixel features over the whole dataset:

- generation 0 clusters *colour and texture*: each band, its local mean and standard deviation in
  a ``window x window`` box, and the gradient magnitude of the band mean (standardised, then
  Euclidean k-means), at full resolution;
- later generations cluster the current encoder's stride-4 features (L2-normalised, spherical
  k-means) and upsample the cluster map to the image (nearest).

Clusters are numbered by decreasing size in the fitting sample, so class 0, which SaDL's
background-swap view treats as background, is the most common cluster.

Masks are a function of the seed, the generation and the features only: the fitting pixels of
image ``i`` come from a generator seeded by ``(seed, generation, i)``. Under DDP each rank
featurises the images ``i = rank, rank + world, ...``; the fitting pixels are gathered, rank 0 runs
k-means and broadcasts the centroids, each rank assigns its images and the masks are gathered on
every rank. The result is the same for any number of processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from datasets import to_float_image
from datasets.batching import group_by_shape
from engine.distributed import all_gather_object, broadcast_object
from engine.errors import ConfigError
from engine.seeding import derive_seed
from pretrain.data import ImageSource
from pretrain.probe.features import select_cells
from pretrain.probe.search import kmeans_clusters

__all__ = ["colour_texture_features", "encoder_featuriser", "Centroids", "compute_pseudo_masks"]

Featuriser = Callable[[torch.Tensor], torch.Tensor]


def colour_texture_features(images: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel colour and texture: bands, local mean, local std, gradient magnitude.

    Args:
        images: ``(B, C, H, W)`` in [0, 1].
        window: side of the (odd) box of the local statistics.
    Returns:
        ``(B, 3C + 1, H, W)``.
    """
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"pseudo.window={window}: expected an odd positive box size.")
    pad = window // 2
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    mean = F.avg_pool2d(padded, window, stride=1)
    var = F.avg_pool2d(padded * padded, window, stride=1) - mean * mean
    grey = F.pad(images.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device, dtype=images.dtype)
    gx = F.conv2d(grey, sobel.view(1, 1, 3, 3))
    gy = F.conv2d(grey, sobel.t().reshape(1, 1, 3, 3))
    return torch.cat([images, mean, var.clamp(min=0).sqrt(), (gx * gx + gy * gy).sqrt()], 1)


def encoder_featuriser(encoder: nn.Module, mean: Sequence[float], std: Sequence[float]) -> Featuriser:
    """Images in [0, 1] -> the encoder's stride-4 features, normalised for the encoder, no gradient."""

    def featurise(images: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(list(mean), dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        s = torch.tensor(list(std), dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        with torch.no_grad():
            return encoder((images - m) / s).float()

    return featurise


@dataclass
class Centroids:
    """Cluster centres in a feature space, and how raw features enter it (standardise or L2-normalise)."""

    centres: np.ndarray  # (K, F)
    spherical: bool
    shift: np.ndarray  # (F,) subtracted before scaling (Euclidean space only)
    scale: np.ndarray  # (F,)

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F, h, w)`` features -> ``(B, h, w)`` index of the nearest centre."""
        c = torch.from_numpy(self.centres).to(features)
        x = features.permute(0, 2, 3, 1)
        if self.spherical:
            return (F.normalize(x, dim=-1) @ c.t()).argmax(-1)
        x = (x - torch.from_numpy(self.shift).to(x)) / torch.from_numpy(self.scale).to(x)
        dist2 = (x * x).sum(-1, keepdim=True) - 2 * x @ c.t() + (c * c).sum(-1)
        return dist2.argmin(-1)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _batches(source: ImageSource, indices: Sequence[int], batch_size: int, device: torch.device) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Images of ``indices`` in batches of one shape, as ``(indices, (B, C, H, W) float in [0, 1])``."""
    images = ((i, to_float_image(source.read(i))) for i in indices)
    for items in group_by_shape(images, lambda item: tuple(item[1].shape), batch_size):
        yield [j for j, _ in items], torch.stack([t for _, t in items]).to(device)


def _fit(samples: np.ndarray, clusters: int, spherical: bool, iters: int, seed: int) -> Centroids:
    """k-means on the gathered fitting pixels; centres sorted by decreasing cluster size."""
    f = samples.shape[1]
    shift, scale = np.zeros(f, np.float32), np.ones(f, np.float32)
    x = samples
    if not spherical:
        shift, scale = samples.mean(0).astype(np.float32), np.maximum(samples.std(0), 1e-6).astype(np.float32)
        x = (samples - shift) / scale
    assign, centres = kmeans_clusters(x, clusters, iters=iters, seed=seed, spherical=spherical)
    order = np.argsort(-np.bincount(assign, minlength=clusters), kind="stable")
    return Centroids(np.ascontiguousarray(centres[order]), spherical, shift, scale)


def compute_pseudo_masks(
    source: ImageSource,
    featurise: Featuriser,
    *,
    clusters: int,
    spherical: bool,
    pixels_per_image: int = 256,
    iters: int = 25,
    batch_size: int = 16,
    seed: int = 0,
    generation: int = 0,
    device: torch.device | str = "cpu",
) -> list[np.ndarray]:
    """One uint8 ``(H, W)`` mask of cluster ids per image of ``source`` (collective under DDP).

    Args:
        source: the images.
        featurise: ``(B, C, H, W)`` images in [0, 1] -> ``(B, F, h, w)`` features (any ``h, w``).
        clusters: K (at most 255).
        spherical: cosine k-means on L2-normalised features (encoder features), else Euclidean
            k-means on standardised features (colour and texture).
        pixels_per_image: seeded pixels of each image that fit the centroids; the fitting set
            holds ``len(source) * pixels_per_image * F`` floats.
        generation: refresh count; enters the seeds so each refresh draws new fitting pixels.
    """
    if not 2 <= clusters <= 255:
        raise ConfigError(f"pseudo.clusters={clusters}: expected 2..255 clusters (uint8 masks).")
    if pixels_per_image < 1:
        raise ConfigError(f"pseudo.pixels_per_image={pixels_per_image}: expected a positive number.")
    device = torch.device(device)
    rank, world = _world()
    mine = list(range(rank, len(source), world))
    draw_seed = derive_seed(seed, generation, 0x95D0)

    fitting: list[tuple[int, np.ndarray]] = []
    for indices, images in _batches(source, mine, batch_size, device):
        feats = featurise(images).flatten(2)  # (B, F, h*w)
        pos, keep = select_cells(torch.ones(feats.shape[0], feats.shape[2], dtype=torch.bool), indices, pixels_per_image, draw_seed)
        picked = feats.gather(2, pos.to(feats.device)[:, None].expand(-1, feats.shape[1], -1)).transpose(1, 2)
        fitting += [(i, picked[j][keep[j].to(feats.device)].cpu().numpy()) for j, i in enumerate(indices)]
    ordered = sorted((p for part in all_gather_object(fitting) for p in part), key=lambda p: p[0])
    samples = np.concatenate([x for _, x in ordered], 0)  # image order: the same for any number of ranks

    centroids = _fit(samples, clusters, spherical, iters, derive_seed(seed, generation, 0xC1)) if rank == 0 else None
    centroids = broadcast_object(centroids)

    masks: list[tuple[int, np.ndarray]] = []
    for indices, images in _batches(source, mine, batch_size, device):
        ids = centroids.assign(featurise(images))  # (B, h, w)
        ids = F.interpolate(ids[:, None].float(), size=images.shape[-2:], mode="nearest")[:, 0]
        masks += [(i, ids[j].to(torch.uint8).cpu().numpy()) for j, i in enumerate(indices)]
    gathered = dict(p for part in all_gather_object(masks) for p in part)
    return [gathered[i] for i in range(len(source))]
