"""An image-only dataset that serves pseudo-masks, with the masked mode's crop plan.

:class:`PseudoMaskDataset` gives the samples SaDL expects (``image``, ``mask``, ``name``) for
images that have no masks: the masks are set from outside (see :mod:`densechange.pretrain.pseudo.masks`; in a
run, a :class:`densechange.pretrain.pseudo.store.MaskStore` that reads each mask window from the run folder when
it is needed). An epoch draws crops in proportion to each image's area, or ``crops_per_epoch`` of
them, by the very plan of :class:`densechange.datasets.ImageMaskDataset`
(:class:`densechange.datasets.readers.crops.CropPlan`), and sample ``i``'s crop depends only on
``(seed, epoch, i)``, so a resumed run sees the same crops. Image and mask are read by window: only
the crop, never the whole scene.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from densechange.datasets import IGNORE_INDEX, to_float_image
from densechange.datasets.errors import DatasetError
from densechange.datasets.readers.crops import CropPlan
from densechange.datasets.transforms.geometry import check_crop_size, draw_geometry, sample_rng
from densechange.pretrain.data import ImageSource, window_of_array
from densechange.pretrain.pseudo.store import OUTSIDE

__all__ = ["PseudoMaskDataset", "mask_window"]


def mask_window(masks: Sequence[np.ndarray] | Any, index: int, top: int, left: int, height: int, width: int) -> np.ndarray:
    """A window of mask ``index``: read from a store by window, or cut from an in-memory list (255 past the edge)."""
    if hasattr(masks, "read_window"):
        return masks.read_window(index, top, left, height, width)
    return window_of_array(np.asarray(masks[index]), top, left, height, width, fill=OUTSIDE)[0]


class PseudoMaskDataset(Dataset):
    """Crops of the images of ``source`` with the pseudo-masks last given to :meth:`set_masks`.

    Args:
        source: the images (see :mod:`densechange.pretrain.data`).
        num_classes: K, the number of pseudo-classes.
        crop_size: crop / pad every sample to ``crop_size`` squares (seeded by ``(seed, epoch, index)``);
            None: one whole image per sample.
        seed: seed of the crops.
        crops_per_epoch: crops per epoch, drawn in proportion to each image's area; None: as many as
            tiles of ``crop_size`` would cover each image, at least one.
    """

    refreshed_between_epochs = True  # new masks arrive in the main process: DataLoader workers must not keep old copies

    def __init__(self, source: ImageSource, num_classes: int, *, crop_size: int | None = None, seed: int = 0,
                 crops_per_epoch: int | None = None) -> None:
        self.source, self.num_classes = source, int(num_classes)
        self.crop_size, self.seed, self.epoch = check_crop_size(crop_size), int(seed), 0
        self.names = list(source.names)
        self.sizes = list(source.sizes)
        self.plan = CropPlan(self.sizes, self.crop_size, crops_per_epoch)
        self.masks: Sequence[np.ndarray] | None = None
        self.generation = -1

    def __len__(self) -> int:
        return len(self.plan)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_masks(self, masks: Sequence[np.ndarray], generation: int) -> None:
        """Install one ``(H, W)`` uint8 mask per image, a list or a store (generation: how many refreshes made them)."""
        if len(masks) != len(self.names):
            raise ValueError(f"got {len(masks)} pseudo-masks for {len(self.names)} images.")
        self.masks, self.generation = masks, int(generation)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        """Crop ``index`` of the epoch: the image's and the mask's window, nothing more is read."""
        if self.masks is None:
            raise RuntimeError("PseudoMaskDataset has no masks yet; call set_masks first.")
        file = self.plan.file_of(index)
        height, width = self.sizes[file]
        if self.crop_size is None:
            top, left, h, w = 0, 0, height, width
        else:
            geometry = draw_geometry(sample_rng(self.seed, self.epoch, index), height, width, self.crop_size)
            top, left, h, w = geometry.top, geometry.left, self.crop_size, self.crop_size
        image, valid = self.source.read_window(file, top, left, h, w)
        stored = mask_window(self.masks, file, top, left, h, w)
        made = self.masks.size_of(file) if hasattr(self.masks, "size_of") else tuple(np.shape(self.masks[file])[:2])
        if made != (height, width):
            raise DatasetError(f"pseudo-mask of {self.names[file]} does not match its image ({height}x{width}); "
                               "the images changed since the masks were made. Start a new run.dir.")
        mask = stored.astype(np.int64)
        mask[stored == OUTSIDE] = IGNORE_INDEX
        if valid is not None:
            mask[~valid] = IGNORE_INDEX
        return {"image": to_float_image(image), "mask": torch.from_numpy(mask), "name": self.names[file]}
