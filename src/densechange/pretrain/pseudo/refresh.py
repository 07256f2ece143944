"""When pseudo-masks are made, refreshed and restored during a pretraining run.

Generation 0 clusters colour and texture before the first epoch. With ``refresh_every = r > 0``,
generation ``g = e / r`` is made from the encoder at the end of epoch ``e - 1`` for every epoch
``e`` that is a multiple of ``r`` (and not past the last epoch). Each generation is written to the
run folder, one folder per generation with the windows' masks written by every process (the two
newest generations are kept), so that a resumed run picks the generation of the epoch it resumes
in and trains on exactly the masks the uninterrupted run saw.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from densechange.checkpoints import read_metadata
from densechange.checkpoints.errors import CheckpointError
from densechange.datasets.errors import DatasetError
from densechange.engine.distributed import any_rank, barrier
from densechange.engine.errors import ConfigError

from densechange.pretrain.pseudo.dataset import PseudoMaskDataset
from densechange.pretrain.pseudo.masks import (DEFAULT_TILE, ENCODER_HALO, colour_texture, compute_pseudo_masks,
                                               encoder_featuriser)
from densechange.pretrain.pseudo.store import MaskStore

__all__ = ["PseudoRefresher", "masks_path", "resume_epoch"]


def masks_path(run_dir: Path, generation: int) -> Path:
    """The folder of one generation of pseudo-masks."""
    return run_dir / f"pseudo_masks_g{generation}"


def resume_epoch(resume_file: Path | None) -> int:
    """Epoch a run resumes in (0 for a fresh run), from the resume checkpoint's loop state."""
    return int(read_metadata(resume_file)["loop"]["epoch"]) if resume_file is not None else 0


class PseudoRefresher:
    """Makes, installs, saves and restores the pseudo-masks of a :class:`PseudoMaskDataset`.

    Args:
        dataset: the training set whose masks are managed.
        run_dir: run folder (every process writes the masks of its windows there).
        refresh_every: epochs between refreshes from the encoder (0: never).
        epochs: total epochs of the run (no refresh is made after the last one).
        window, pixels_per_image, max_pixels, iters, batch_size, tile: see :func:`compute_pseudo_masks`.
        halo: context read around each window for the encoder's features (pixels).
        mean, std: the encoder's input normalisation.
    """

    def __init__(
        self,
        dataset: PseudoMaskDataset,
        run_dir: Path,
        *,
        refresh_every: int,
        epochs: int,
        window: int,
        pixels_per_image: int,
        max_pixels: int | None,
        iters: int,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int,
        device: torch.device,
        is_main: bool,
        tile: int = DEFAULT_TILE,
        halo: int = ENCODER_HALO,
    ) -> None:
        if refresh_every < 0:
            raise ConfigError(f"pseudo.refresh_every={refresh_every}: expected 0 (never) or a number of epochs.")
        if tile < 32 or tile % 32:
            raise ConfigError(f"pseudo.tile={tile}: expected a multiple of 32 pixels (the encoder's coarsest stride).")
        if halo < 0 or halo % 32:
            raise ConfigError(f"pseudo.halo={halo}: expected a multiple of 32 pixels, so that encoder windows keep the "
                              "image's stride-32 grid.")
        self.dataset, self.run_dir = dataset, Path(run_dir)
        self.refresh_every, self.epochs, self.window = refresh_every, epochs, window
        self.kwargs = dict(clusters=dataset.num_classes, pixels_per_image=pixels_per_image, max_pixels=max_pixels,
                           iters=iters, batch_size=batch_size, seed=seed, device=device, tile=tile)
        self.mean, self.std, self.is_main, self.halo = list(mean), list(std), is_main, halo

    def generation_of(self, epoch: int) -> int:
        return epoch // self.refresh_every if self.refresh_every else 0

    def start(self, epoch: int, encoder: nn.Module) -> None:
        """Install the masks of ``epoch``: reopened from the run folder when complete, else made now."""
        generation = self.generation_of(epoch)
        path = masks_path(self.run_dir, generation)
        stored = None
        try:
            if path.is_dir():
                stored = MaskStore(path, self.dataset.names)
                if self.is_main:
                    stored.verify()
        except (DatasetError, CheckpointError):  # incomplete, for other images, or corrupt: make it again
            stored = None
        if not any_rank(stored is None):
            self.dataset.set_masks(stored, generation)  # type: ignore[arg-type]
            return
        if generation > 0:
            warnings.warn(f"{path} is missing or incomplete; pseudo-masks of generation {generation} are remade from "
                          "the current encoder, so this resumed run will not repeat the interrupted one exactly.",
                          stacklevel=2)
        self._make(generation, epoch, encoder)

    def after_epoch(self, epoch: int, encoder: nn.Module) -> dict[str, float]:
        """At the end of ``epoch``: refresh from ``encoder`` when the next epoch starts a generation."""
        nxt = epoch + 1
        if not self.refresh_every or nxt % self.refresh_every or nxt >= self.epochs:
            return {}
        store = self._make(self.generation_of(nxt), nxt, encoder)
        return {"pseudo_generation": float(self.dataset.generation), "pseudo_pixels": float(store.meta["fitting_pixels"])}

    def _make(self, generation: int, epoch: int, encoder: nn.Module) -> MaskStore:
        folder = masks_path(self.run_dir, generation)
        if generation == 0:
            store = compute_pseudo_masks(self.dataset.source, colour_texture(self.window), folder,
                                         spherical=False, generation=0, epoch=epoch, **self.kwargs)
        else:
            was_training = encoder.training
            encoder.eval()
            try:
                featurise = encoder_featuriser(encoder, self.mean, self.std, self.halo)
                store = compute_pseudo_masks(self.dataset.source, featurise, folder, spherical=True,
                                             generation=generation, epoch=epoch, **self.kwargs)
            finally:
                encoder.train(was_training)
        self.dataset.set_masks(store, generation)
        if self.is_main:
            print(f"pseudo-masks generation {generation}: k-means of {store.meta['fitting_pixels']} pixels "
                  f"(pseudo.max_pixels={self.kwargs['max_pixels']}), written to {folder}", flush=True)
            stale = masks_path(self.run_dir, generation - 2)
            if generation >= 2 and stale.exists():
                shutil.rmtree(stale)
        barrier()
        return store
