"""Sharded, resumable batching of a map-style dataset.

Each epoch draws one permutation from (seed, epoch), cuts it into equal shards, one per rank,
and can start in the middle of an epoch. This is what makes ``trainer.resume`` continue exactly
where the killed run stopped (with the same number of processes: the shards depend on it).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from densechange.engine.seeding import derive_seed


class ShardedSampler(Sampler[int]):
    """Disjoint per-rank shards of a seeded per-epoch permutation, with a start offset.

    Args:
        n: dataset length.
        rank, world_size: this process and the number of processes.
        batch_size: per-process batch size; each shard is cut to whole batches.
        seed: run seed; the permutation of epoch ``e`` depends on ``(seed, e)`` only.
        shuffle: permute (training) or keep the order (evaluation).
    """

    def __init__(self, n: int, rank: int, world_size: int, batch_size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.rank, self.world = n, rank, world_size
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.epoch, self.start_batch = 0, 0
        self.batches = (n // world_size) // batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def shard(self) -> list[int]:
        """This rank's indices for the current epoch, before the start offset."""
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, 0x5A))
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        usable = self.batches * self.batch_size * self.world
        return order[:usable][self.rank :: self.world].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start_batch * self.batch_size :])

    def __len__(self) -> int:
        return (self.batches - self.start_batch) * self.batch_size


class EpochIndices(Sampler[tuple[int, int]]):
    """A sharded sampler's indices tagged with its epoch: ``(epoch, index)``.

    DataLoader workers then learn the epoch from the indices they are sent, so they can live for the
    whole run (no start-up per epoch) and still cut every epoch's crops as an uninterrupted run would.
    """

    def __init__(self, sampler: ShardedSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochDataset(Dataset):
    """Serves ``(epoch, index)`` from a dataset, calling its ``set_epoch`` when the epoch changes."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset, self.epoch = dataset, None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        epoch, index = item
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        return self.dataset[index]


def make_loader(dataset: Dataset, sampler: ShardedSampler, num_workers: int, pin_memory: bool) -> DataLoader:
    """A loader over whole batches, made once per run: the epoch travels with the indices.

    Workers persist across epochs, unless the dataset changes between epochs in the main process
    (``refreshed_between_epochs``, e.g. new pseudo-masks): then every epoch starts fresh workers.
    """
    persistent = num_workers > 0 and not getattr(dataset, "refreshed_between_epochs", False)
    return DataLoader(
        EpochDataset(dataset),
        batch_size=sampler.batch_size,
        sampler=EpochIndices(sampler),
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=persistent,
    )


def batch_to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; 4-D float tensors optionally channels-last."""
    if torch.is_tensor(batch):
        t = batch.to(device, non_blocking=True)
        if channels_last and t.dim() == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        return t
    if isinstance(batch, dict):
        return {k: batch_to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(batch_to_device(v, device, channels_last) for v in batch)
    return batch
