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

Masks are a function of the seed, the generation and the features only. Under ``torchrun`` each
process featurises its shard of the images (see :mod:`densechange.pretrain.probe.pixel_sample`); each image offers
``pixels_per_image`` seeded fitting pixels, and at most ``max_pixels`` of them, those with the
smallest seeded keys, are gathered on rank 0, which runs k-means and broadcasts the centroids. Each
process then assigns its own images and writes their masks to the generation folder
(:mod:`densechange.pretrain.pseudo.store`); nothing else travels between processes. The masks are the same for
any number of processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from densechange.datasets import to_float_image
from densechange.datasets.errors import DatasetError
from densechange.datasets.readers.batching import group_by_shape
from densechange.engine.distributed import any_rank, barrier, broadcast_object, rank_and_world
from densechange.engine.errors import ConfigError, TrainingError
from densechange.engine.seeding import derive_seed
from densechange.pretrain.data import ImageSource
from densechange.pretrain.probe.pixel_sample import SmallestKeys, gather_sample, shard_indices
from densechange.pretrain.probe.features import pick_cells
from densechange.pretrain.probe.search import kmeans_clusters

from densechange.pretrain.pseudo.store import MaskStore, MaskWriter, clear_folder

__all__ = ["colour_texture_features", "encoder_featuriser", "Centroids", "kmeans_centroids", "fit_centroids",
           "compute_pseudo_masks"]

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


def _batches(source: ImageSource, indices: Sequence[int], batch_size: int, device: torch.device) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Images of ``indices`` in batches of one shape, as ``(indices, (B, C, H, W) float in [0, 1])``."""
    images = ((i, to_float_image(source.read(i))) for i in indices)
    for items in group_by_shape(images, lambda item: tuple(item[1].shape), batch_size):
        yield [j for j, _ in items], torch.stack([t for _, t in items]).to(device)


def kmeans_centroids(samples: np.ndarray, clusters: int, spherical: bool, iters: int, seed: int) -> Centroids:
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


def fit_centroids(
    source: ImageSource,
    featurise: Featuriser,
    *,
    clusters: int,
    spherical: bool,
    pixels_per_image: int,
    max_pixels: int | None,
    iters: int,
    batch_size: int,
    seed: int,
    generation: int,
    device: torch.device,
) -> tuple[Centroids, int]:
    """k-means centroids of a bounded, seeded sample of pixels, and the sample's size (collective)."""
    rank, world = rank_and_world()
    draw_seed = derive_seed(seed, generation, 0x95D0)
    sample = SmallestKeys(max_pixels)
    for indices, images in _batches(source, shard_indices(len(source), rank, world, batch_size), batch_size, device):
        feats = featurise(images).flatten(2)  # (B, F, h*w)
        pos, keep, keys = pick_cells(torch.ones(feats.shape[0], feats.shape[2], dtype=torch.bool), indices,
                                     pixels_per_image, draw_seed)
        picked = feats.gather(2, pos.to(feats.device)[:, None].expand(-1, feats.shape[1], -1)).transpose(1, 2)
        image = torch.tensor(indices, dtype=torch.long)[:, None].expand_as(keys)
        sample.add(keys[keep], features=picked[keep.to(feats.device)].float(), image=image[keep])
    rows = gather_sample(sample)  # on rank 0, in image order: the same for any number of ranks
    fitted = None
    if rows is not None:
        centroids = kmeans_centroids(rows["features"].numpy(), clusters, spherical, iters, derive_seed(seed, generation, 0xC1))
        fitted = (centroids, rows["total"])
    return broadcast_object(fitted)  # type: ignore[return-value]


def compute_pseudo_masks(
    source: ImageSource,
    featurise: Featuriser,
    folder: str | Path,
    *,
    clusters: int,
    spherical: bool,
    pixels_per_image: int = 256,
    max_pixels: int | None = 100_000,
    iters: int = 25,
    batch_size: int = 16,
    seed: int = 0,
    generation: int = 0,
    epoch: int = 0,
    device: torch.device | str = "cpu",
) -> MaskStore:
    """Write one uint8 ``(H, W)`` mask of cluster ids per image of ``source`` into ``folder`` (collective).

    Args:
        source: the images.
        featurise: ``(B, C, H, W)`` images in [0, 1] -> ``(B, F, h, w)`` features (any ``h, w``).
        folder: the generation folder; replaced if it exists. Every process writes its shard there.
        clusters: K (at most 255).
        spherical: cosine k-means on L2-normalised features (encoder features), else Euclidean
            k-means on standardised features (colour and texture).
        pixels_per_image: seeded fitting pixels offered by each image.
        max_pixels: at most this many fitting pixels in all (rank 0 holds ``max_pixels x F`` floats).
        generation: refresh count; enters the seeds so each refresh draws new fitting pixels.
    Returns:
        The masks, read from ``folder`` on demand; ``store.meta["fitting_pixels"]`` is the sample size.
    """
    if not 2 <= clusters <= 255:
        raise ConfigError(f"pseudo.clusters={clusters}: expected 2..255 clusters (uint8 masks).")
    if pixels_per_image < 1:
        raise ConfigError(f"pseudo.pixels_per_image={pixels_per_image}: expected a positive number.")
    if max_pixels is not None and max_pixels < clusters:
        raise ConfigError(f"pseudo.max_pixels={max_pixels}: expected at least pseudo.clusters={clusters} pixels, or null.")
    device, folder = torch.device(device), Path(folder)
    rank, world = rank_and_world()
    centroids, fitting = fit_centroids(source, featurise, clusters=clusters, spherical=spherical,
                                       pixels_per_image=pixels_per_image, max_pixels=max_pixels, iters=iters,
                                       batch_size=batch_size, seed=seed, generation=generation, device=device)
    if rank == 0:
        clear_folder(folder)
    barrier()
    writer = MaskWriter(folder, rank, {"generation": generation, "epoch": epoch, "fitting_pixels": fitting})
    for indices, images in _batches(source, shard_indices(len(source), rank, world, batch_size), batch_size, device):
        ids = centroids.assign(featurise(images))  # (B, h, w)
        ids = F.interpolate(ids[:, None].float(), size=images.shape[-2:], mode="nearest")[:, 0]
        for j, i in enumerate(indices):
            writer.add(i, source.names[i], ids[j].to(torch.uint8).cpu().numpy())
    writer.flush()
    barrier()
    return open_written(folder, source.names)


def open_written(folder: Path, names: Sequence[str]) -> MaskStore:
    """The store of a generation that every process has just written; a clear error when one cannot see it all."""
    try:
        store, problem = MaskStore(folder, names), None
    except DatasetError as err:
        store, problem = None, err
    if any_rank(problem is not None):
        raise TrainingError(f"the pseudo-masks that the processes wrote to {folder} are not all visible to every process "
                            f"({problem or 'on another process'}). Put run.dir on a filesystem shared by all nodes.")
    return store  # type: ignore[return-value]
