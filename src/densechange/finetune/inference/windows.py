"""Sliding windows: their settings, the grid of windows over a scene, and the weighted sums that blend them.

Large tiles do not fit a network in one piece, and a network sees its window's edges as image
edges. So a pair is cut into overlapping windows (a :class:`WindowGrid`), and each window's output
is added to the sums of its pixels (:class:`Sums`) with a weight that

- is 0 within ``margin`` pixels of an edge that lies inside the image (where padding corrupts
  the output), rises linearly to 1 across the rest of the overlap, and
- stays 1 up to an edge that is the image's own border (that edge is the same in the whole image).

The result is ``sum(w * out) / sum(w)``. For a network whose output at a pixel depends only on a
neighbourhood of radius ``r <= margin``, every weighted contribution equals the whole-image output,
so the blend reproduces the whole-image prediction exactly. Window starts are multiples of
``align`` (the network's coarsest stride; the image is padded by edge replication to make that
possible), which keeps every window's feature grid aligned with the others'.

:meth:`Predictor.blocks <densechange.finetune.inference.backend.Predictor.blocks>` runs the network
over a :class:`~densechange.finetune.inference.scene.Scene`'s windows block by block and blends
them here, for prediction, validation and evaluation alike.

One default window (:data:`DEFAULT_WINDOWS`) serves ``densechange predict``, ``evaluate``,
validation (``val.window``) and ``export``, so that the F1 a run reports is that of the maps it
predicts; the measurements behind it (speed and F1 at windows 256, 512 and 1024, and the batch
sizes per device) are in ``bench/results/`` (``cpu-2core-predict-2026-12-05.md``), summed up in
``docs/prediction.md`` ("The default window", "The window batch").
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch

from densechange.engine.errors import ConfigError

BATCH_PIXELS = {"cpu": 2 * 256**2, "cuda": 8 * 256**2}
"""Pixels per forward pass, by device type, when a batch size is not given: a CPU's convolutions
slow down per window as a batch outgrows its caches, a GPU wants full batches."""


def batch_for(window: int, device: str | torch.device = "cpu") -> int:
    """Windows of ``window``² per batch on ``device``: :data:`BATCH_PIXELS` worth, at least one."""
    return pixels_batch(window, window, device)


def pixels_batch(height: int, width: int, device: str | torch.device = "cpu") -> int:
    """Inputs of ``height x width`` per batch on ``device``: :data:`BATCH_PIXELS` worth, at least one."""
    kind = torch.device(device).type
    return max(1, BATCH_PIXELS.get(kind, BATCH_PIXELS["cuda"]) // (height * width))


@dataclass
class WindowSettings:
    """Sliding-window settings; also the ``window`` section of ``evaluate`` and ``val.window`` of finetuning."""

    size: int = 512  # window side in pixels
    overlap: int = 64  # pixels shared by neighbouring windows
    margin: int = 8  # pixels next to an inner window edge that get no weight
    batch_size: Optional[int] = None  # windows (or whole smaller images) per forward pass; null: sized per device

    def check(self, align: int = 1) -> None:
        """Raise :class:`ConfigError` naming the setting that cannot work with a network of stride ``align``."""
        size, overlap, margin = self.size, self.overlap, self.margin
        if size < 1 or size % align:
            raise ConfigError(f"window size {size} must be a positive multiple of {align} (the network's coarsest stride).")
        if not 0 <= overlap < size:
            raise ConfigError(f"window overlap {overlap} must be in [0, window size {size}).")
        if margin < 0 or (overlap > 0 or margin > 0) and overlap <= 2 * margin:
            raise ConfigError(f"window overlap {overlap} must exceed twice the margin {margin} so that every pixel keeps a "
                              "positive weight; lower the margin or raise the overlap.")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"window batch size must be >= 1 (or null: sized per device), got {self.batch_size}.")
        step = (size - overlap) // align * align
        if step < align or (margin > 0 and size - step <= 2 * margin):
            raise ConfigError(f"window {size} minus overlap {overlap} must be at least the network stride {align}, leaving "
                              f"an overlap above twice the margin {margin}; lower the overlap or raise the window size.")

    def batch(self, height: int, width: int, device: str | torch.device = "cpu") -> int:
        """Inputs of ``height x width`` (windows, or whole images smaller than one) per forward pass.

        ``batch_size`` when set; else :data:`BATCH_PIXELS` worth for the device, so that a batch of
        small images holds as many pixels as a batch of windows.
        """
        return self.batch_size if self.batch_size is not None else pixels_batch(height, width, device)


DEFAULT_WINDOWS = WindowSettings()
"""The one place the default window lives: configs, predictors, commands and benchmarks read it here."""


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts ``0, stride, 2 stride, ...`` and a last window flush with the end; ``length >= window``."""
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def edge_weight(window: int, inner_start: bool, inner_end: bool, margin: int, ramp: int) -> torch.Tensor:
    """1-D window weight ``(window,)``: 0 within ``margin`` of an inner edge, then a linear ramp of ``ramp`` pixels to 1."""
    i = torch.arange(window, dtype=torch.float32)
    w = torch.ones(window)
    for inner, dist in ((inner_start, i), (inner_end, window - 1 - i)):
        if inner:
            w = torch.minimum(w, ((dist - margin + 1) / ramp).clamp(0, 1))
    return w


def round_up(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


@dataclass(frozen=True)
class WindowGrid:
    """The windows of one scene: their starts, their size and the weight of each.

    Use :meth:`for_scene`. ``padded_h x padded_w`` is the scene padded (by edge replication) to a
    multiple of the alignment and to at least one window.
    """

    height: int
    width: int
    padded_h: int
    padded_w: int
    win_h: int
    win_w: int
    stride: int
    margin: int
    ramp: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @classmethod
    def for_scene(cls, height: int, width: int, windows: WindowSettings, align: int = 1) -> "WindowGrid":
        hp, wp = max(round_up(height, align), 1), max(round_up(width, align), 1)
        win_h, win_w = min(windows.size, hp), min(windows.size, wp)
        hp, wp = max(hp, win_h), max(wp, win_w)
        stride = (windows.size - windows.overlap) // align * align  # WindowSettings.check guarantees stride >= align
        return cls(height, width, hp, wp, win_h, win_w, stride, windows.margin,
                   max(1, windows.overlap // 2 - windows.margin),
                   tuple(window_starts(hp, win_h, stride)), tuple(window_starts(wp, win_w, stride)))

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    def weight(self, y: int, x: int) -> torch.Tensor:
        """``(win_h, win_w)`` weight of the window at ``(y, x)``: only its inner edges fade out."""
        return _weight(self.win_h, self.win_w, y > 0, y + self.win_h < self.padded_h, x > 0,
                       x + self.win_w < self.padded_w, self.margin, self.ramp)

    def touching(self, y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int]]:
        """Starts of the windows that overlap rows ``[y0, y1)`` and columns ``[x0, x1)``, row by row."""
        rows = [y for y in self.ys if y < y1 and y + self.win_h > y0]
        cols = [x for x in self.xs if x < x1 and x + self.win_w > x0]
        return [(y, x) for y in rows for x in cols]

    def cuts(self, starts: tuple[int, ...], win: int, size: int, every: int) -> list[int]:
        """Block boundaries along one axis, every ``every`` windows.

        A boundary is put where the window before the cut ends, so that only one window (the one
        that starts just before the cut) touches both blocks.
        """
        regular = [starts[i - 1] + win for i in range(every, len(starts), every)]
        return [0] + [c for c in regular if 0 < c < size] + [size]


@functools.lru_cache(maxsize=64)
def _weight(win_h: int, win_w: int, top: bool, bottom: bool, left: bool, right: bool, margin: int, ramp: int) -> torch.Tensor:
    wy = edge_weight(win_h, top, bottom, margin, ramp)
    wx = edge_weight(win_w, left, right, margin, ramp)
    return wy[:, None] * wx[None, :]


WindowOutput = tuple[torch.Tensor, Optional[torch.Tensor]]
"""One window's outputs on the CPU: logits ``(K, win_h, win_w)`` and distance ``(win_h, win_w)`` or None."""


@dataclass
class Sums:
    """Weighted sums of window outputs over a region: ``logits`` ``(K, h, w)``, ``distance`` ``(h, w)``, ``weight``.

    ``top, left``: where the region starts in the scene.
    """

    logits: torch.Tensor
    distance: torch.Tensor | None
    weight: torch.Tensor
    top: int = 0
    left: int = 0

    @classmethod
    def zeros(cls, classes: int, distance: bool, region: tuple[int, int, int, int]) -> "Sums":
        """Zero sums of ``classes`` logits (and a distance or not) over ``region = (y0, y1, x0, x1)`` of the scene."""
        y0, y1, x0, x1 = region
        h, w = y1 - y0, x1 - x0
        return cls(torch.zeros(classes, h, w), torch.zeros(h, w) if distance else None, torch.zeros(h, w), y0, x0)

    def zeros_like(self, region: tuple[int, int, int, int]) -> "Sums":
        """Zero sums over ``region`` with these sums' classes and outputs."""
        return Sums.zeros(self.logits.shape[0], self.distance is not None, region)

    def rows(self, top: int, bottom: int) -> "Sums":
        """Rows ``[top, bottom)`` of the region (views)."""
        return Sums(self.logits[:, top:bottom], self.distance[top:bottom] if self.distance is not None else None,
                    self.weight[top:bottom], self.top + top, self.left)

    def columns(self, left: int, right: int) -> "Sums":
        """Columns ``[left, right)`` of the region (views)."""
        return Sums(self.logits[:, :, left:right], self.distance[:, left:right] if self.distance is not None else None,
                    self.weight[:, left:right], self.top, self.left + left)

    def copy_from(self, other: "Sums") -> None:
        """Overwrite these sums (views included) with ``other``'s, of the same shape."""
        self.weight.copy_(other.weight)
        self.logits.copy_(other.logits)
        if self.distance is not None:
            self.distance.copy_(other.distance)

    def add(self, grid: WindowGrid, start: tuple[int, int], output: WindowOutput) -> None:
        """Add the weighted outputs of the window at ``start`` to the pixels of the region that it covers."""
        logits, dist = output
        h, w = self.weight.shape
        y, x = start
        ty0, ty1 = max(y, self.top), min(y + grid.win_h, self.top + h)
        tx0, tx1 = max(x, self.left), min(x + grid.win_w, self.left + w)
        inside = (slice(ty0 - y, ty1 - y), slice(tx0 - x, tx1 - x))
        here = (slice(ty0 - self.top, ty1 - self.top), slice(tx0 - self.left, tx1 - self.left))
        weight = grid.weight(y, x)[inside]
        self.logits[(slice(None), *here)].addcmul_(logits[(slice(None), *inside)], weight)
        self.weight[here] += weight
        if self.distance is not None:
            self.distance[here].addcmul_(dist[inside], weight)

    def blended(self) -> dict[str, torch.Tensor | None]:
        return {"logits": self.logits / self.weight,
                "distance": self.distance / self.weight if self.distance is not None else None}
