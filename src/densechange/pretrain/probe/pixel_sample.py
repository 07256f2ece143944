"""A bounded, seeded sample of pixels from images spread over the processes of a run.

The epoch-end work (the probe, pseudo-mask fitting) needs pixels from the whole dataset. Reading
every image on rank 0 while the other ranks wait does not scale, and gathering every selected pixel
grows with the data. Instead:

- every process reads only its shard: chunks of ``chunk`` consecutive images dealt round-robin
  (:func:`shard_indices`), so that with images of one shape each batch holds the same images as with
  one process, and the features agree for any number of processes;
- every candidate pixel carries a key, uniform in [0, 1), from a generator seeded by
  ``(seed, image index)``: it depends on neither the rank, the batch nor the device;
- each process keeps only the rows of its ``limit`` smallest keys while it streams its images
  (:class:`SmallestKeys`; memory: about ``2 * limit`` rows);
- the sample is the ``limit`` smallest keys of all processes (:func:`gather_sample`): the keys are
  gathered (8 bytes each), the threshold is fixed, and only the chosen rows travel, to rank 0.

The sample, and its order (by image, then key), is therefore the same for any number of processes.
"""
from __future__ import annotations

from typing import Any

import torch

from densechange.engine.distributed import all_gather_object, all_gather_rows, gather_rows, rank_and_world

__all__ = ["shard_indices", "SmallestKeys", "gather_sample"]


def shard_indices(n: int, rank: int, world: int, chunk: int) -> list[int]:
    """Indices of ``rank``'s shard of ``n`` items: chunks of ``chunk`` consecutive items, dealt round-robin."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    chunks = range(rank, -(-n // chunk), world)
    return [i for c in chunks for i in range(c * chunk, min(n, (c + 1) * chunk))]


class SmallestKeys:
    """The rows with the ``limit`` smallest keys among those added so far (``limit=None``: every row).

    Rows are columns of equal length (``key`` float64 plus any named tensors); they are pruned back
    to ``limit`` whenever twice as many have piled up, so memory stays bounded while images stream.
    """

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be a positive number of rows or None, got {limit}")
        self.limit = limit
        self.parts: list[dict[str, torch.Tensor]] = []
        self.rows = 0

    def add(self, keys: torch.Tensor, **columns: torch.Tensor) -> None:
        """Add rows: ``keys (N,)`` and tensors ``(N, ...)`` on the CPU."""
        self.parts.append({"key": keys.to(torch.float64).cpu(), **{k: v.cpu() for k, v in columns.items()}})
        self.rows += int(keys.shape[0])
        if self.limit is not None and self.rows > 2 * self.limit:
            self._prune()

    def _prune(self) -> None:
        rows = self.columns()
        if rows is not None and self.limit is not None and rows["key"].shape[0] > self.limit:
            keep = rows["key"].topk(self.limit, largest=False, sorted=False).indices.sort().values
            rows = {k: v[keep] for k, v in rows.items()}
        self.parts = [rows] if rows is not None else []
        self.rows = int(rows["key"].shape[0]) if rows is not None else 0

    def columns(self) -> dict[str, torch.Tensor] | None:
        """Every kept row, concatenated (None when nothing was added)."""
        if not self.parts:
            return None
        return {k: torch.cat([p[k] for p in self.parts]) for k in self.parts[0]}


def _empty_like(spec: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty((0, *shape), dtype=getattr(torch, dtype.split(".")[-1])) for k, (shape, dtype) in spec.items()}


def gather_sample(sample: SmallestKeys, dst: int = 0) -> dict[str, Any] | None:
    """The ``sample.limit`` rows with the smallest keys over all processes, on ``dst`` (None elsewhere).

    Returns the columns sorted by ``image`` (when there is such a column) and then by key, plus
    ``total``: the number of rows selected. Collective: every process must call it.
    """
    local = sample.columns()
    spec = None if local is None else {k: (tuple(v.shape[1:]), str(v.dtype)) for k, v in local.items()}
    spec = next((s for s in all_gather_object(spec) if s is not None), None)
    if spec is None:
        return None if rank_and_world()[0] != dst else {"total": 0}
    local = local if local is not None else _empty_like(spec)
    keys = all_gather_rows(local["key"])
    if sample.limit is not None and keys.shape[0] > sample.limit:
        threshold = keys.kthvalue(sample.limit).values
        chosen = local["key"] <= threshold
        local = {k: v[chosen] for k, v in local.items()}
    gathered = {k: gather_rows(v, dst) for k, v in local.items()}
    if gathered["key"] is None:
        return None
    order = gathered["key"].argsort(stable=True)
    if "image" in gathered:
        order = order[gathered["image"][order].argsort(stable=True)]
    out: dict[str, Any] = {k: v[order] for k, v in gathered.items()}
    out["total"] = int(order.shape[0])
    return out
