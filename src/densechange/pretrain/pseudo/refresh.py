"""When pseudo-masks are made, refreshed and restored during a pretraining run.

Generation 0 clusters colour and texture before the first epoch. With ``refresh_every = r > 0``,
generation ``g = e / r`` is made from the encoder at the end of epoch ``e - 1`` for every epoch
``e`` that is a multiple of ``r`` (and not past the last epoch). Each generation is written to the
run folder, one folder per generation with the windows' masks written by every process (the two
newest generations are kept), so that a resumed run picks the generation of the epoch it resumes
in and trains on exactly the masks the uninterrupted run saw. Each new generation also goes to the
run's TensorBoard stream as pictures of a few fixed images beside their masks
(:mod:`densechange.pretrain.pseudo.preview`).
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Sequence

from torch import nn

from densechange.checkpoints import read_metadata
from densechange.checkpoints.errors import CheckpointError
from densechange.datasets.errors import DatasetError
from densechange.engine.distributed import any_rank, barrier
from densechange.engine.errors import ConfigError
from densechange.engine.loop import RunContext

from densechange.pretrain.pseudo.dataset import PseudoMaskDataset
from densechange.pretrain.pseudo.config import PseudoConfig
from densechange.pretrain.pseudo.masks import colour_texture, compute_pseudo_masks, encoder_featuriser
from densechange.pretrain.pseudo.preview import PREVIEW_IMAGES, mask_preview
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
        dataset: the training set whose masks are managed (its ``num_classes`` is ``settings.clusters``).
        settings: the ``pseudo`` section (checked when it was built).
        ctx: the run: its folder (every process writes the masks of its windows there), seed, device,
            whether this is the main process and its TensorBoard stream.
        epochs: total epochs of the run (no refresh is made after the last one).
        mean, std: the encoder's input normalisation.
    """

    def __init__(self, dataset: PseudoMaskDataset, settings: PseudoConfig, ctx: RunContext, *, epochs: int,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        if dataset.num_classes != settings.clusters:
            raise ConfigError(f"the pseudo-mask dataset has {dataset.num_classes} classes but pseudo.clusters="
                              f"{settings.clusters}; build both from the same pseudo section.")
        self.dataset, self.settings, self.epochs = dataset, settings, epochs
        self.run_dir, self.seed, self.device, self.is_main = Path(ctx.dir), ctx.seed, ctx.dist.device, ctx.is_main
        self.board = ctx.board
        self.refresh_every = settings.refresh_every
        self.mean, self.std = list(mean), list(std)

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
        made = dict(seed=self.seed, generation=generation, epoch=epoch, device=self.device)
        if generation == 0:
            store = compute_pseudo_masks(self.dataset.source, colour_texture(self.settings.window), folder, self.settings,
                                         **made)
        else:
            was_training = encoder.training
            encoder.eval()
            try:
                featurise = encoder_featuriser(encoder, self.mean, self.std, self.settings.halo)
                store = compute_pseudo_masks(self.dataset.source, featurise, folder, self.settings, **made)
            finally:
                encoder.train(was_training)
        self.dataset.set_masks(store, generation)
        if self.is_main:
            print(f"pseudo-masks generation {generation}: k-means of {store.meta['fitting_pixels']} pixels "
                  f"(pseudo.max_pixels={self.settings.max_pixels}), written to {folder}", flush=True)
            stale = masks_path(self.run_dir, generation - 2)
            if generation >= 2 and stale.exists():
                shutil.rmtree(stale)
            if self.board.enabled:
                source = self.dataset.source
                for i in range(min(PREVIEW_IMAGES, len(source))):
                    self.board.image(f"pseudo_masks/{source.names[i]}", mask_preview(source, store, i, store.size_of(i)))
                self.board.flush()
        barrier()
        return store
