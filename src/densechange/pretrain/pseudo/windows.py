"""Pseudo-mask work cut into windows, batched once, and split across processes by area.

A scene of 20,000² pixels cannot be featurised whole, and one such scene must not keep one process
busy while the others wait. So the work is planned from the image sizes alone:

- every image is cut into a grid of ``tile x tile`` *core* windows (an image smaller than a tile is
  one window); each window is read with a ``halo`` around its core, clipped at the image's edges,
  so that the features of the core see the same pixels as in the whole image (:class:`Window`);
- the windows of one image with the same read and core geometry (the inner ones, those along
  each edge, the corners) form batches of at most ``batch_size`` (:func:`plan_batches`), so a
  2048² scene fills batches as a 20,000² one does, and the batches are the same for any number of
  processes, so the features, and the masks, do not depend on it;
- the batches are dealt to the processes in contiguous runs of about equal pixel count
  (:func:`split_by_area`), not image by image.

Example:
    >>> windows = plan_windows([(1024, 1024), (256, 256)], tile=512, halo=32)
    >>> len(windows), windows[0].read, windows[0].core_offset
    (5, (0, 0, 544, 544), (0, 0))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from densechange.engine.errors import ConfigError

__all__ = ["Window", "plan_windows", "plan_batches", "split_by_area"]


@dataclass(frozen=True)
class Window:
    """One window of pseudo-mask work: the core it labels and the region read around it.

    ``uid`` numbers the windows of the whole plan; it seeds the window's fitting pixels.
    """

    uid: int
    image: int
    top: int
    left: int
    height: int
    width: int
    read: tuple[int, int, int, int]  # (top, left, height, width) of the region read, halo included

    @property
    def core_offset(self) -> tuple[int, int]:
        """Where the core starts inside the region read."""
        return self.top - self.read[0], self.left - self.read[1]

    @property
    def geometry(self) -> tuple[int, ...]:
        """What must be equal for windows to share a batch: the read shape and the core's place in it."""
        return (self.read[2], self.read[3], *self.core_offset, self.height, self.width)

    @property
    def area(self) -> int:
        return self.read[2] * self.read[3]


def plan_windows(sizes: Sequence[tuple[int, int]], tile: int, halo: int) -> list[Window]:
    """Core windows of ``tile`` (row-major per image, images in order), each read with ``halo`` around it."""
    if tile < 1:
        raise ConfigError(f"pseudo.tile={tile}: expected a positive window side in pixels.")
    if halo < 0:
        raise ConfigError(f"pseudo.halo={halo}: expected a non-negative margin in pixels.")
    out: list[Window] = []
    for image, (h, w) in enumerate(sizes):
        for top in range(0, h, tile):
            for left in range(0, w, tile):
                ch, cw = min(tile, h - top), min(tile, w - left)
                r0, c0 = max(top - halo, 0), max(left - halo, 0)
                r1, c1 = min(top + ch + halo, h), min(left + cw + halo, w)
                out.append(Window(len(out), image, top, left, ch, cw, (r0, c0, r1 - r0, c1 - c0)))
    return out


def plan_batches(windows: Sequence[Window], batch_size: int) -> list[list[Window]]:
    """Windows of one geometry in batches of at most ``batch_size``: grouped by geometry within each image."""
    if batch_size < 1:
        raise ConfigError(f"pseudo.batch_size={batch_size}: expected a positive number of windows.")
    batches: list[list[Window]] = []
    for win in sorted(windows, key=lambda w: (w.image, w.geometry, w.uid)):
        if batches and batches[-1][-1].geometry == win.geometry and len(batches[-1]) < batch_size:
            batches[-1].append(win)
        else:
            batches.append([win])
    return batches


def split_by_area(areas: Sequence[int], rank: int, world: int) -> list[int]:
    """Indices of ``rank``'s items: contiguous runs of items of about ``sum(areas) / world`` pixels each.

    Item ``i`` goes to the process whose share holds the middle of its pixels, so the shares differ by
    at most one item's pixels, and every item goes to exactly one process.
    """
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} of {world} processes")
    a = np.asarray(areas, dtype=np.float64)
    if a.size == 0:
        return []
    middle = np.cumsum(a) - a / 2
    owner = np.minimum((middle * world / a.sum()).astype(np.int64), world - 1)
    return np.flatnonzero(owner == rank).tolist()
