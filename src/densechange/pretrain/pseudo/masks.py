"""Pseudo-masks for pretraining without labels: k-means clusters of per-pixel features.

SaDL needs a class map to balance its point sampling and to know what to push apart. Without
masks, the classes are clusters of per-pixel features over the whole dataset:

- generation 0 clusters *colour and texture*: each band, its local mean and standard deviation in
  a ``window x window`` box, and the gradient magnitude of the band mean (standardised, then
  Euclidean k-means), at full resolution;
- later generations cluster the current encoder's stride-4 features (L2-normalised, spherical
  k-means); each pixel takes the cluster of the stride-4 cell it lies in.

Clusters are numbered by decreasing size in the fitting sample, so class 0, which SaDL's
background-swap view treats as background, is the most common cluster.

Scenes of any size are made window by window (:mod:`densechange.pretrain.pseudo.windows`): each
``tile x tile`` core is featurised with the halo of context its features need (the colour-texture
box, or a margin for the encoder's receptive field), read by window and clipped at the image's
edges, and only the core's features are kept. The colour-texture features of a core are therefore
exactly those of the whole image, and encoder features are exactly those of the whole image
whenever the image fits in one window. Memory is one batch of windows, whatever the scene size.

Masks are a function of the seed, the generation and the features only. The batches of windows are
planned from the image sizes and dealt to the processes by area; each window offers
``pixels_per_image`` seeded fitting pixels (keyed by the window's number in the plan), and at most
``max_pixels`` of them, those with the smallest seeded keys, are gathered on rank 0 (see
:mod:`densechange.pretrain.probe.pixel_sample`), which runs k-means and broadcasts the centroids.
Each process then assigns its windows and writes their masks to the generation folder
(:mod:`densechange.pretrain.pseudo.store`) as it goes; nothing else travels between processes. The
masks are the same for any number of processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from torch import nn

from densechange.datasets import to_float_image
from densechange.datasets.errors import DatasetError
from densechange.engine.distributed import any_rank, barrier, broadcast_object, rank_and_world
from densechange.engine.errors import ConfigError, TrainingError
from densechange.engine.seeding import derive_seed
from densechange.pretrain.data import ImageSource
from densechange.pretrain.probe.pixel_sample import SmallestKeys, gather_sample
from densechange.pretrain.probe.features import pick_cells
from densechange.pretrain.probe.search import kmeans_clusters

from densechange.datasets.io.raster import Georef
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.pseudo.store import MaskStore, MaskWriter, clear_folder, write_scene_vrt
from densechange.pretrain.pseudo.windows import Window, plan_batches, plan_windows, split_by_area

__all__ = ["colour_texture_features", "Featuriser", "colour_texture", "encoder_featuriser", "Centroids",
           "kmeans_centroids", "fit_centroids", "write_masks", "compute_pseudo_masks"]

GDAL_CACHE_MB = 16  # each window is read about once: a large block cache would only grow with the scene


@dataclass(frozen=True)
class Featuriser:
    """Images in [0, 1] ``(B, C, H, W)`` -> features ``(B, F, h, w)``, the halo each output needs, and their k-means.

    ``halo`` is the margin of context, in pixels, read around a window so that its core's features
    are those of the whole image. ``spherical`` features are directions (encoder features: cosine
    k-means on L2-normalised features); otherwise each feature is standardised and clustered by
    Euclidean k-means (colour and texture).
    """

    fn: Callable[[torch.Tensor], torch.Tensor]
    halo: int = 0
    spherical: bool = False

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


def colour_texture_features(images: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel colour and texture: bands, local mean, local std, gradient magnitude.

    Args:
        images: ``(B, C, H, W)`` in [0, 1].
        window: side of the (odd) box of the local statistics.
    Returns:
        ``(B, 3C + 1, H, W)``.
    """
    pad = _check_box(window) // 2
    padded = F.pad(torch.cat([images, images * images]), (pad, pad, pad, pad), mode="replicate")  # (2B, C, ..)
    box = F.avg_pool2d(F.avg_pool2d(padded, (window, 1), stride=1), (1, window), stride=1)  # separable box mean
    mean, var = box[: images.shape[0]], box[images.shape[0] :]
    var = var - mean * mean
    grey = F.pad(images.mean(1, keepdim=True), (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device, dtype=images.dtype)
    g = F.conv2d(grey, torch.stack([sobel, sobel.t()])[:, None])  # (B, 2, H, W): x and y gradients in one pass
    return torch.cat([images, mean, var.clamp(min=0).sqrt(), g.square().sum(1, keepdim=True).sqrt()], 1)


def _check_box(window: int) -> int:
    """The side of the local-statistics box: odd and positive, so that it is centred on its pixel."""
    if window < 1 or window % 2 == 0:
        raise ConfigError(f"pseudo.window={window}: expected an odd positive box size.")
    return window


def colour_texture(window: int = 7) -> Featuriser:
    """:func:`colour_texture_features` with the halo its box and its Sobel filter need (Euclidean k-means)."""
    _check_box(window)
    return Featuriser(partial(colour_texture_features, window=window), halo=max(window // 2, 1))


def encoder_featuriser(encoder: nn.Module, mean: Sequence[float], std: Sequence[float],
                       halo: int = PseudoConfig.halo) -> Featuriser:
    """Images in [0, 1] -> the encoder's stride-4 features, normalised for the encoder, no gradient (cosine k-means)."""

    def featurise(images: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(list(mean), dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        s = torch.tensor(list(std), dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
        with torch.no_grad():
            return encoder((images - m) / s).float()

    return Featuriser(featurise, halo=halo, spherical=True)


@dataclass
class Centroids:
    """Cluster centres in a feature space, and how raw features enter it (standardise or L2-normalise)."""

    centres: np.ndarray  # (K, F)
    spherical: bool
    shift: np.ndarray  # (F,) subtracted before scaling (Euclidean space only)
    scale: np.ndarray  # (F,)

    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, F, h, w)`` features -> ``(B, h, w)`` index of the nearest centre.

        Computed on the raw features, without a standardised or normalised copy of them: a pixel's
        own norm does not change which centre is nearest (Euclidean) or most similar (cosine).
        """
        c = torch.from_numpy(self.centres).to(features)
        if self.spherical:
            return torch.einsum("bfhw,kf->bkhw", features, c).argmax(1)
        scale, shift = torch.from_numpy(self.scale).to(features), torch.from_numpy(self.shift).to(features)
        w = c / scale  # |(x - shift) / scale - c|² = |x'|² - 2 x·(c / scale) + 2 shift·(c / scale) + |c|²
        bias = (c * c).sum(-1) + 2 * (shift * w).sum(-1)
        return (bias[:, None, None] - 2 * torch.einsum("bfhw,kf->bkhw", features, w)).argmin(1)


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


def _as_featuriser(featurise: Featuriser | Callable[[torch.Tensor], torch.Tensor]) -> Featuriser:
    return featurise if isinstance(featurise, Featuriser) else Featuriser(featurise, halo=0, spherical=False)


def batches_of_this_process(sizes: Sequence[tuple[int, int]], tile: int, halo: int, batch_size: int) -> list[list[Window]]:
    """This process's batches of windows: the plan's batches, dealt by area (the same plan on every process)."""
    batches = plan_batches(plan_windows(sizes, tile, halo), batch_size)
    rank, world = rank_and_world()
    return [batches[i] for i in split_by_area([sum(w.area for w in b) for b in batches], rank, world)]


def _read_batches(source: ImageSource, batches: Sequence[list[Window]], device: torch.device) -> Iterator[tuple[list[Window], torch.Tensor]]:
    """Each batch's read regions, as ``(windows, (B, C, h, w) float in [0, 1])``; one batch in memory at a time."""
    for batch in batches:
        images = [to_float_image(source.read_window(w.image, *w.read)[0]) for w in batch]
        yield batch, torch.stack(images).to(device)


def _stride(read: int, cells: int) -> int:
    """The feature stride that gives ``cells`` cells over ``read`` pixels (1, 2, 4, ...; convolutions round up)."""
    for s in (1, 2, 4, 8, 16, 32, 64):
        if -(-read // s) == cells:
            return s
    return max(1, round(read / cells))


def core_features(windows: Sequence[Window], features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The feature cells under the windows' cores, and which cell each core pixel takes its label from.

    Args:
        windows: one batch (one geometry).
        features: ``(B, F, h, w)`` features of their read regions.
    Returns:
        ``(B, F, h', w')`` cells covering the cores, and the row ``(core height,)`` and column
        ``(core width,)`` of each core pixel's cell among them (pixel ``y`` of the image sits in cell
        ``y // stride`` of the whole image's feature map).
    """
    w = windows[0]
    (rh, rw), (fh, fw) = w.read[2:], features.shape[-2:]
    oy, ox = w.core_offset
    rows = ((oy + torch.arange(w.height)) // _stride(rh, fh)).clamp(max=fh - 1)
    cols = ((ox + torch.arange(w.width)) // _stride(rw, fw)).clamp(max=fw - 1)
    r0, c0 = int(rows[0]), int(cols[0])
    cells = features[:, :, r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1]
    return cells, rows - r0, cols - c0


def fit_centroids(source: ImageSource, featurise: Featuriser, settings: PseudoConfig, *, seed: int, generation: int,
                  device: torch.device) -> tuple[Centroids, int]:
    """k-means centroids of a bounded, seeded sample of pixels drawn window by window, and its size (collective).

    ``settings`` gives the clusters, the fitting pixels per window and in all, the k-means
    iterations, the windows' side and the batch size.
    """
    featurise = _as_featuriser(featurise)
    draw_seed = derive_seed(seed, generation, 0x95D0)
    sample = SmallestKeys(settings.max_pixels)
    batches = batches_of_this_process(source.sizes, settings.tile, featurise.halo, settings.batch_size)
    for windows, images in _read_batches(source, batches, device):
        cells = core_features(windows, featurise(images))[0]  # (B, F, h', w'): the cells of the cores
        b, _, h, w = cells.shape
        uids = [win.uid for win in windows]
        pos, keep, keys = pick_cells(torch.ones(b, h * w, dtype=torch.bool), uids, settings.pixels_per_image, draw_seed)
        pos = pos.to(cells.device)
        picked = cells[torch.arange(b, device=cells.device)[:, None], :, pos // w, pos % w]  # (B, P, F), no copy of the rest
        window = torch.tensor(uids, dtype=torch.long)[:, None].expand_as(keys)
        sample.add(keys[keep], features=picked[keep.to(cells.device)].float(), image=window[keep])
    rows = gather_sample(sample)  # on rank 0, in window order: the same for any number of ranks
    fitted = None
    if rows is not None:
        centroids = kmeans_centroids(rows["features"].numpy(), settings.clusters, featurise.spherical, settings.iters,
                                     derive_seed(seed, generation, 0xC1))
        fitted = (centroids, rows["total"])
    return broadcast_object(fitted)  # type: ignore[return-value]


def compute_pseudo_masks(
    source: ImageSource,
    featurise: Featuriser | Callable[[torch.Tensor], torch.Tensor],
    folder: str | Path,
    settings: PseudoConfig,
    *,
    seed: int = 0,
    generation: int = 0,
    epoch: int = 0,
    device: torch.device | str = "cpu",
) -> MaskStore:
    """Write the uint8 mask of cluster ids of every image of ``source``, window by window, into ``folder`` (collective).

    Args:
        source: the images, read by window.
        featurise: a :class:`Featuriser`, which also says how its features are clustered (a plain
            function of ``(B, C, H, W)`` images in [0, 1] -> ``(B, F, h, w)`` features is taken to need
            no halo and Euclidean k-means).
        folder: the generation folder; replaced if it exists. Every process writes its windows there.
        settings: the ``pseudo`` section: ``clusters`` (K, at most 255), ``pixels_per_image`` (seeded
            fitting pixels offered by each image, or by each window of a larger one), ``max_pixels``
            (at most this many fitting pixels in all; rank 0 holds ``max_pixels x F`` floats),
            ``iters``, ``batch_size`` (windows per feature batch) and ``tile`` (the core windows' side,
            a multiple of 32, so encoder windows share the image's grid).
        generation: refresh count; enters the seeds so each refresh draws new fitting pixels.
        epoch: the epoch the masks are made for (recorded in the store's metadata).
    Returns:
        The masks, read from ``folder`` on demand; ``store.meta["fitting_pixels"]`` is the sample size.
    """
    featurise, device, folder = _as_featuriser(featurise), torch.device(device), Path(folder)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        centroids, fitting = fit_centroids(source, featurise, settings, seed=seed, generation=generation, device=device)
        write_masks(source, featurise, centroids, folder, {"generation": generation, "epoch": epoch,
                                                           "fitting_pixels": fitting}, settings, device=device)
    store = open_written(folder, source.names)
    write_vrts(source, store, settings.tile)
    return store


def write_masks(source: ImageSource, featurise: Featuriser, centroids: Centroids, folder: Path, meta: dict,
                settings: PseudoConfig, *, device: torch.device) -> None:
    """Assign every window's core to ``centroids`` and write it into a fresh ``folder`` (collective).

    ``settings`` gives the windows' side (``tile``) and how many share a batch (``batch_size``).
    """
    rank, _ = rank_and_world()
    if rank == 0:
        clear_folder(folder)
    barrier()
    writer = MaskWriter(folder, rank, {**meta, "tile": settings.tile})
    sizes = source.sizes
    georef = (-1, Georef())  # the last image's: its windows come together
    batches = batches_of_this_process(sizes, settings.tile, featurise.halo, settings.batch_size)
    for windows, images in _read_batches(source, batches, device):
        cells, rows, cols = core_features(windows, featurise(images))
        ids = centroids.assign(cells)  # (B, h', w')
        ids = ids[:, rows.to(ids.device)[:, None], cols.to(ids.device)[None, :]].to(torch.uint8).cpu().numpy()
        for j, w in enumerate(windows):
            if georef[0] != w.image:
                georef = (w.image, _georef(source, w.image))
            writer.add(w.image, source.names[w.image], sizes[w.image], w.top, w.left, ids[j], georef[1])
    writer.flush()
    barrier()


def _georef(source: ImageSource, index: int) -> Georef:
    return source.georef(index) if hasattr(source, "georef") else Georef()


def write_vrts(source: ImageSource, store: MaskStore, tile: int) -> None:
    """A VRT over the pieces of every image cut into several windows, shared among the processes (collective)."""
    rank, world = rank_and_world()
    scenes = [i for i, (h, w) in enumerate(source.sizes) if h > tile or w > tile]
    for i in scenes[rank::world]:
        write_scene_vrt(store, i, _georef(source, i))
    barrier()


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
