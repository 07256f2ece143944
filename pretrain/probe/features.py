"""Frozen dense features of an encoder at seeded pixels of a labelled image set.

The probes work on the encoder's finest map (stride 4). Rather than upsampling 256-channel
features to full resolution, the *labels* are brought down to the feature grid: each feature cell
takes the mask value at its centre pixel. That is 16x fewer pixels for the same information and
no interpolated features that no layer of the network produced. Cells whose centre is ignored (or
padding) are never selected; images with empty masks still give their background cells.

From each image, ``pixels_per_image`` valid cells are drawn without replacement by a generator
seeded from ``(seed, image index)``, so the selection does not depend on the batch size, the batch
order or the device. Images are batched by shape (tiles of one size form full batches).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from datasets.batching import group_by_shape

from datasets.errors import DatasetError

__all__ = ["PixelSet", "centre_labels", "select_cells", "shape_batches", "extract_pixels"]


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
    b, m = valid.shape
    keys = torch.stack([torch.from_numpy(np.random.default_rng([seed, int(i)]).random(m)) for i in indices])
    keys = torch.where(valid.cpu(), keys, torch.full_like(keys, float("inf")))
    p = m if count is None else min(int(count), m)
    order = keys.argsort(dim=1, stable=True)[:, :p]
    keep = torch.isfinite(keys.gather(1, order))
    return order.to(valid.device), keep.to(valid.device)


def shape_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Batches of samples whose images share one shape, as ``(indices, {"image", "mask"})``."""
    samples = ((index, dataset[index]) for index in range(len(dataset)))
    for items in group_by_shape(samples, lambda item: tuple(item[1]["image"].shape), batch_size):
        yield [i for i, _ in items], {k: torch.stack([s[k] for _, s in items]) for k in ("image", "mask")}


@torch.no_grad()
def extract_pixels(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    pixels_per_image: int | None,
    batch_size: int = 8,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> PixelSet:
    """Encoder features and mask labels at seeded cells of every image of ``dataset``.

    Args:
        encoder: module mapping ``(B, C, H, W)`` to its stride-4 map ``(B, D, h, w)``; run in eval mode.
        dataset: samples ``{"image": (C, H, W) float in [0, 1], "mask": (H, W) long}``.
        mean, std: per-band input normalisation.
        pixels_per_image: cells drawn per image (None: every valid cell).
    Returns:
        The selected cells, ordered by image index and draw order.
    """
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    mean_t = torch.tensor(list(mean), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(list(std), dtype=torch.float32, device=device).view(1, -1, 1, 1)
    feats, labels, images = [], [], []
    try:
        for indices, batch in shape_batches(dataset, batch_size):
            x = (batch["image"].to(device).float() - mean_t) / std_t
            fmap = encoder(x)  # (B, D, h, w)
            b, d, h, w = fmap.shape
            grid = centre_labels(batch["mask"].to(device).long(), (h, w)).flatten(1)  # (B, h*w)
            pos, keep = select_cells(grid >= 0, indices, pixels_per_image, seed)
            picked = fmap.flatten(2).gather(2, pos[:, None].expand(b, d, -1)).transpose(1, 2)  # (B, P, D)
            feats.append(picked[keep].float().cpu())
            labels.append(grid.gather(1, pos)[keep].cpu())
            images.append(torch.tensor(indices, dtype=torch.long)[:, None].expand_as(keep)[keep.cpu()])
    finally:
        encoder.train(was_training)
    if not feats:
        raise DatasetError("the probe dataset has no images.")
    image_ids = torch.cat(images).numpy()
    order = np.argsort(image_ids, kind="stable")
    return PixelSet(
        features=np.ascontiguousarray(torch.cat(feats).numpy()[order], dtype=np.float32),
        labels=torch.cat(labels).numpy()[order].astype(np.int64),
        images=image_ids[order].astype(np.int64),
    )
