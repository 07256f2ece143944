"""Frozen dense features of an encoder at seeded pixels of a labelled image set.

The probes work on the encoder's finest map (stride 4). Rather than upsampling 256-channel
features to full resolution, the *labels* are brought down to the feature grid: each feature cell
takes the mask value at its centre pixel. That is 16x fewer pixels for the same information and
no interpolated features that no layer of the network produced. Cells whose centre is ignored (or
padding) are never selected; images with empty masks still give their background cells.

From each image, ``pixels_per_image`` valid cells are drawn without replacement by a generator
seeded from ``(seed, image index)``, so the selection does not depend on the batch size, the batch
order or the device. Images are batched by shape (tiles of one size form full batches).

Under ``torchrun`` each process extracts the features of its shard of the images, and only a
bounded sample travels: the ``max_pixels`` cells with the smallest seeded keys over all images
(see :mod:`densechange.pretrain.probe.pixel_sample`), gathered on rank 0. The sample is the same for any number of
processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from densechange.datasets.readers.batching import group_by_shape
from densechange.datasets.errors import DatasetError
from densechange.engine.distributed import rank_and_world
from densechange.pretrain.probe.config import ProbeConfig
from densechange.pretrain.probe.pixel_sample import SmallestKeys, gather_sample, shard_indices

__all__ = ["PixelSet", "centre_labels", "cell_keys", "pick_cells", "select_cells", "shape_batches", "extract_pixels"]


@dataclass
class PixelSet:
    """Selected pixels of an image set: features ``(N, D)`` float32, labels ``(N,)`` and image index ``(N,)``."""

    features: np.ndarray
    labels: np.ndarray
    images: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def centre_labels(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mask value at the centre pixel of every cell of an ``(h, w)`` grid over the image.

    Args:
        mask: ``(B, H, W)`` long class ids (negative: ignore).
        size: ``(h, w)`` of the feature map.
    Returns:
        ``(B, h, w)`` long.
    """
    _, height, width = mask.shape
    h, w = size
    rows = ((torch.arange(h, device=mask.device) + 0.5) * height / h).long().clamp_(max=height - 1)
    cols = ((torch.arange(w, device=mask.device) + 0.5) * width / w).long().clamp_(max=width - 1)
    return mask[:, rows][:, :, cols]


def cell_keys(indices: Sequence[int], cells: int, seed: int) -> torch.Tensor:
    """``(B, cells)`` float64 keys in [0, 1), one generator per image seeded by ``(seed, image index)``."""
    return torch.stack([torch.from_numpy(np.random.default_rng([seed, int(i)]).random(cells)) for i in indices])


def pick_cells(valid: torch.Tensor, indices: Sequence[int], count: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Up to ``count`` valid cells per image: those with the smallest seeded keys (see :func:`select_cells`).

    Returns:
        positions ``(B, P)`` long, keep ``(B, P)`` bool and the cells' keys ``(B, P)`` float64 (CPU).
    """
    b, m = valid.shape
    keys = cell_keys(indices, m, seed)
    keys = torch.where(valid.cpu(), keys, torch.full_like(keys, float("inf")))
    p = m if count is None else min(int(count), m)
    order = keys.argsort(dim=1, stable=True)[:, :p]
    picked = keys.gather(1, order)
    keep = torch.isfinite(picked)
    return order.to(valid.device), keep.to(valid.device), picked


def select_cells(valid: torch.Tensor, indices: Sequence[int], count: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``count`` valid cells per image, uniformly without replacement, seeded per image.

    Args:
        valid: ``(B, M)`` bool, selectable cells of each image.
        indices: dataset index of each image (seeds its draw).
        count: cells per image; None selects every valid cell.
    Returns:
        positions ``(B, P)`` long and keep ``(B, P)`` bool (False where an image has fewer than
        ``P`` valid cells).
    """
    order, keep, _ = pick_cells(valid, indices, count, seed)
    return order, keep


def shape_batches(dataset: Dataset, batch_size: int, indices: Sequence[int] | None = None,
                  keys: Sequence[str] = ("image", "mask")) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Batches of samples whose images share one shape, as ``(indices, {key: stacked tensor})``.

    ``indices`` restricts the batches to those samples (a process's shard); default: all. The shape
    is that of the first of ``keys`` (``image``; a change pair's ``a``).
    """
    order = range(len(dataset)) if indices is None else indices
    samples = ((index, dataset[index]) for index in order)
    for items in group_by_shape(samples, lambda item: tuple(item[1][keys[0]].shape), batch_size):
        yield [i for i, _ in items], {k: torch.stack([s[k] for _, s in items]) for k in keys}


@torch.no_grad()
def extract_pixels(encoder: nn.Module, dataset: Dataset, *, mean: Sequence[float], std: Sequence[float],
                   settings: ProbeConfig, seed: int = 0, device: torch.device | str = "cpu") -> PixelSet | None:
    """Encoder features and mask labels at seeded cells of the images of ``dataset``.

    Collective under ``torchrun``: each process featurises its shard and the sample is gathered on
    rank 0, which gets the :class:`PixelSet`; the other processes get None.

    Args:
        encoder: module mapping ``(B, C, H, W)`` to its stride-4 map ``(B, D, h, w)``; run in eval mode.
        dataset: samples ``{"image": (C, H, W) float in [0, 1], "mask": (H, W) long}``.
        mean, std: per-band input normalisation.
        settings: ``pixels_per_image`` (cells drawn per image; None: every valid cell), ``max_pixels``
            (at most this many cells in all, those with the smallest keys; None: no limit) and
            ``batch_size`` (images per batch).
    Returns:
        The selected cells, ordered by image index and draw order.
    """
    if len(dataset) == 0:
        raise DatasetError("the probe dataset has no images.")
    device = torch.device(device)
    rank, world = rank_and_world()
    was_training = encoder.training
    encoder.eval()
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    sample = SmallestKeys(settings.max_pixels)
    batch_size = settings.batch_size
    try:
        for indices, batch in shape_batches(dataset, batch_size, shard_indices(len(dataset), rank, world, batch_size)):
            x = (batch["image"].to(device).float() - mean_t) / std_t
            fmap = encoder(x)  # (B, D, h, w)
            b, d, h, w = fmap.shape
            grid = centre_labels(batch["mask"].to(device).long(), (h, w)).flatten(1)  # (B, h*w)
            pos, keep, keys = pick_cells(grid >= 0, indices, settings.pixels_per_image, seed)
            picked = fmap.flatten(2).gather(2, pos[:, None].expand(b, d, -1)).transpose(1, 2)  # (B, P, D)
            image = torch.tensor(indices, dtype=torch.long)[:, None].expand_as(keys)
            sample.add(keys[keep.cpu()], features=picked[keep].float(), label=grid.gather(1, pos)[keep],
                       image=image[keep.cpu()])
    finally:
        encoder.train(was_training)
    rows = gather_sample(sample)
    if rows is None:
        return None
    if rows["total"] == 0:
        return PixelSet(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return PixelSet(
        features=np.ascontiguousarray(rows["features"].numpy(), dtype=np.float32),
        labels=rows["label"].numpy().astype(np.int64),
        images=rows["image"].numpy().astype(np.int64),
    )
