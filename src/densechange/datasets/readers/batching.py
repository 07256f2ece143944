"""Batches of samples that share one shape, for inference over images of any size.

Probes, pseudo-masks and full-size validation all stack images of one shape into a batch. They do
it the same way: consecutive items of one shape are grouped, a batch is yielded as soon as it is
full or the shape changes, so at most one batch is held in memory, whatever the dataset's size.
"""
from __future__ import annotations

from typing import Callable, Hashable, Iterable, Iterator, TypeVar

T = TypeVar("T")

__all__ = ["group_by_shape"]


def group_by_shape(
    items: Iterable[T],
    shape: Callable[[T], Hashable],
    batch_size: int | Callable[[T], int],
    alone: Callable[[T], bool] | None = None,
) -> Iterator[list[T]]:
    """Consecutive items of one ``shape`` in lists of at most ``batch_size``.

    Args:
        items: any iterable, consumed lazily.
        shape: the key that must be equal within a batch (e.g. ``lambda s: s["image"].shape``).
        batch_size: largest batch, or a function giving it from a batch's first item (e.g. from its size).
        alone: items for which this is true come in a batch of their own (e.g. scenes larger than one window).

    Example:
        >>> [len(b) for b in group_by_shape([1, 1, 1, 2, 1], shape=lambda x: x, batch_size=2)]
        [2, 1, 1, 1]
    """
    limit_of = batch_size if callable(batch_size) else lambda item: batch_size
    pending: list[T] = []
    key: Hashable = None
    limit = 0
    for item in items:
        single = alone is not None and alone(item)
        this = shape(item)
        if pending and (single or this != key or len(pending) == limit):
            yield pending
            pending = []
        if single:
            yield [item]
            continue
        if not pending:
            limit = limit_of(item)
            if limit < 1:
                raise ValueError(f"batch_size must be >= 1, got {limit}")
        pending.append(item)
        key = this
    if pending:
        yield pending
