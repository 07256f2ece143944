"""Pseudo-masks on disk: one folder per generation, files written per shard, masks read one at a time.

A generation lives in ``RUN/pseudo_masks_g<N>/``. Each process writes the masks of its own shard of
the images, in files of at most :data:`CHUNK` masks (``rank<R>-<C>.safetensors``, the toolkit's
checkpoint format, written atomically); nothing is gathered between processes. Training reads any
image's mask through :class:`MaskStore`, which keeps only an index (image -> file) in memory and
reads each mask from its file when asked, so memory does not grow with the dataset and a
generation can be reopened by a resumed run with any number of processes.

All processes must see the same run folder: on several nodes, ``run.dir`` must be on a shared
filesystem (the store says so when a shard written by another node is missing).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from densechange.checkpoints.format import CheckpointError, load_file, read_metadata, read_tensor, save_file
from densechange.datasets.errors import DatasetError

__all__ = ["CHUNK", "KIND", "MaskWriter", "MaskStore", "clear_folder"]

CHUNK = 256  # masks per file: bounds the memory of a writer and of a file check
KIND = "pseudo-masks"


def clear_folder(folder: Path) -> None:
    """Remove a generation folder (a stale or partial one) and create it empty; call on one process."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


class MaskWriter:
    """Writes the masks of one process's shard into ``folder``, :data:`CHUNK` masks per file.

    Args:
        folder: the generation folder (it must exist).
        rank: the writing process; it names the files.
        meta: metadata stored in every file (generation, epoch, fitting pixels...).
    """

    def __init__(self, folder: Path, rank: int, meta: dict) -> None:
        self.folder, self.rank, self.meta = Path(folder), int(rank), dict(meta)
        self.pending: list[tuple[int, str, np.ndarray]] = []
        self.files = 0

    def add(self, index: int, name: str, mask: np.ndarray) -> None:
        self.pending.append((int(index), name, np.ascontiguousarray(mask, dtype=np.uint8)))
        if len(self.pending) == CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)  # a node that does not share the run folder fails later, clearly
        tensors = {f"mask.{i}": torch.from_numpy(m) for i, _, m in self.pending}
        meta = {"kind": KIND, **self.meta, "indices": [i for i, _, _ in self.pending], "names": [n for _, n, _ in self.pending]}
        save_file(self.folder / f"rank{self.rank:05d}-{self.files:05d}.safetensors", tensors, meta)
        self.pending, self.files = [], self.files + 1


class MaskStore(Sequence[np.ndarray]):
    """The masks of one generation, ``store[i]`` read from its file on demand.

    Args:
        folder: the generation folder.
        names: the dataset's image names; the stored masks must be for exactly these images.
    Raises:
        DatasetError: the folder is missing, incomplete, or holds masks of other images.
    """

    def __init__(self, folder: str | Path, names: Sequence[str]) -> None:
        self.folder = Path(folder)
        files = sorted(self.folder.glob("*.safetensors")) if self.folder.is_dir() else []
        where = np.full(len(names), -1, np.int32)
        self.files: list[str] = []
        self.meta: dict = {}
        for f in files:
            meta = read_metadata(f)
            if meta.get("kind") != KIND:
                raise CheckpointError(f"{f} is a '{meta.get('kind')}' file, not pseudo-masks.")
            indices, stored = meta.get("indices", []), meta.get("names", [])
            if any(not 0 <= i < len(names) or names[i] != n for i, n in zip(indices, stored)):
                raise DatasetError(f"{f} holds pseudo-masks of other images than this dataset's; resume with the same "
                                   "data, or start a new run.dir.")
            where[indices] = len(self.files)
            self.files.append(f.name)
            self.meta = {k: v for k, v in meta.items() if k not in ("indices", "names")}
        missing = int((where < 0).sum())
        if missing:
            raise DatasetError(f"{self.folder} holds pseudo-masks of {len(names) - missing} of {len(names)} images. "
                               "On several nodes, run.dir must be on a filesystem that every node sees.")
        self.where = where

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation", -1))

    def __len__(self) -> int:
        return int(self.where.shape[0])

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        """The ``(H, W)`` uint8 mask of image ``index``."""
        return read_tensor(self.folder / self.files[self.where[index]], f"mask.{int(index)}").numpy()

    def verify(self) -> None:
        """Check every file against the digest stored when it was written (one file in memory at a time)."""
        for name in self.files:
            load_file(self.folder / name)
