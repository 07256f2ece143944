"""An image-only dataset that serves pseudo-masks.

:class:`PseudoMaskDataset` gives the samples SaDL expects (``image``, ``mask``, ``name``) for
images that have no masks: the masks are set from outside (see :mod:`densechange.pretrain.pseudo.masks`; in a
run, a :class:`densechange.pretrain.pseudo.store.MaskStore` that reads each mask from the run folder when it
is needed) and cut together with the image, with the same seeded crop rule as
:class:`densechange.datasets.ImageMaskDataset`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from densechange.datasets import IGNORE_INDEX, to_float_image
from densechange.datasets.errors import DatasetError
from densechange.datasets.transforms.geometry import apply_geometry, check_crop_size, draw_geometry, sample_rng
from densechange.pretrain.data import ImageSource

__all__ = ["PseudoMaskDataset"]


class PseudoMaskDataset(Dataset):
    """Images of ``source`` with the pseudo-masks last given to :meth:`set_masks`.

    Args:
        source: the images (see :mod:`densechange.pretrain.data`).
        num_classes: K, the number of pseudo-classes.
        crop_size: crop / pad every sample to ``crop_size`` squares (seeded by ``(seed, epoch, index)``).
        seed: seed of the crops.
    """

    refreshed_between_epochs = True  # new masks arrive in the main process: DataLoader workers must not keep old copies

    def __init__(self, source: ImageSource, num_classes: int, *, crop_size: int | None = None, seed: int = 0) -> None:
        self.source, self.num_classes = source, int(num_classes)
        self.crop_size, self.seed, self.epoch = check_crop_size(crop_size), int(seed), 0
        self.names = list(source.names)
        self.masks: Sequence[np.ndarray] | None = None
        self.generation = -1

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_masks(self, masks: Sequence[np.ndarray], generation: int) -> None:
        """Install one ``(H, W)`` uint8 mask per image, a list or a store (generation: how many refreshes made them)."""
        if len(masks) != len(self):
            raise ValueError(f"got {len(masks)} pseudo-masks for {len(self)} images.")
        self.masks, self.generation = masks, int(generation)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if self.masks is None:
            raise RuntimeError("PseudoMaskDataset has no masks yet; call set_masks first.")
        image, mask = self.source.read(index), self.masks[index].astype(np.int64)
        if image.shape[:2] != mask.shape:
            raise DatasetError(f"pseudo-mask of {self.names[index]} is {mask.shape}, its image {image.shape[:2]}; "
                             "the images changed since the masks were made. Start a new run.dir.")
        if self.crop_size is not None:
            geometry = draw_geometry(sample_rng(self.seed, self.epoch, index), image.shape[0], image.shape[1], self.crop_size)
            image = apply_geometry(image, geometry, self.crop_size, fill=0)
            mask = apply_geometry(mask, geometry, self.crop_size, fill=IGNORE_INDEX)
        return {"image": to_float_image(image), "mask": torch.from_numpy(mask), "name": self.names[index]}
