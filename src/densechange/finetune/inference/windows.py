"""Sliding-window prediction of image pairs of any size, blended at the seams.

Large tiles do not fit a network in one piece, and a network sees its window's edges as image
edges. So a pair is cut into overlapping windows (a :class:`WindowGrid`), processed ``batch_size``
at a time, and each window's output is accumulated with a weight that

- is 0 within ``margin`` pixels of an edge that lies inside the image (where padding corrupts
  the output), rises linearly to 1 across the rest of the overlap, and
- stays 1 up to an edge that is the image's own border (that edge is the same in the whole image).

The result is ``sum(w * out) / sum(w)``. For a network whose output at a pixel depends only on a
neighbourhood of radius ``r <= margin``, every weighted contribution equals the whole-image output,
so the blend reproduces the whole-image prediction exactly. Window starts are multiples of
``align`` (the network's coarsest stride; the image is padded by edge replication to make that
possible), which keeps every window's feature grid aligned with the others'.

:func:`blend_region` computes that blend for any rectangle of the image from the windows that touch
it, so a scene can be predicted block by block (:mod:`densechange.finetune.inference.streaming`) with the same result as the
whole image at once (:func:`sliding_window`, used for validation), in memory that depends on the
block, not the scene.

Example:
    >>> out = sliding_window(lambda a, b: model(a, b), a, b, window=256, overlap=64, margin=8, batch_size=8, align=32)
    >>> out["logits"].shape                                   # (K, H, W)
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from densechange.engine.errors import ConfigError

WindowFn = Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor | None]]


@dataclass(frozen=True)
class WindowSettings:
    """Sliding-window settings: window side, overlap between neighbours, dead margin (pixels), windows per pass."""

    size: int = 256
    overlap: int = 64
    margin: int = 8  # pixels next to an inner window edge that get no weight
    batch_size: int = 8  # windows per forward pass: bounds the peak memory


DEFAULT_WINDOWS = WindowSettings()
"""The one place the defaults live: configs, predictors, command-line flags and benchmarks read them here."""

BATCH_PIXELS = {"cpu": 2 * 256**2, "cuda": DEFAULT_WINDOWS.batch_size * DEFAULT_WINDOWS.size**2}
"""Pixels per window batch, by device type, when a batch size is not given.

On a CPU, oneDNN's convolutions slow down per window as a batch outgrows the caches, so a CPU batch
is small; a GPU wants full batches. Measurements: ``docs/prediction.md`` ("The window batch")."""

PREDICT_WINDOW = 512
"""The commands' default window (``window.size`` of predict, evaluate and export, and validation's
``val.window.size``: :class:`densechange.finetune.config.WindowConfig`): about as accurate as the
others tried and the fastest on whole scenes, where a larger window pays for the last one flush with
the scene's edge (``bench/predict_windows.py``; the figures: ``docs/prediction.md``, "The default window")."""


def batch_for(window: int, device: str | torch.device = "cpu") -> int:
    """Windows per batch for ``window`` on ``device``: :data:`BATCH_PIXELS` worth, at least one."""
    kind = torch.device(device).type
    return max(1, BATCH_PIXELS.get(kind, BATCH_PIXELS["cuda"]) // (window * window))


def check_windows(window: int, overlap: int, margin: int, batch_size: int | None, align: int = 1) -> None:
    """Raise :class:`ConfigError` naming the window setting that cannot work."""
    if window < 1 or window % align:
        raise ConfigError(f"window size {window} must be a positive multiple of {align} (the network's coarsest stride).")
    if not 0 <= overlap < window:
        raise ConfigError(f"window overlap {overlap} must be in [0, window size {window}).")
    if margin < 0 or (overlap > 0 or margin > 0) and overlap <= 2 * margin:
        raise ConfigError(f"window overlap {overlap} must exceed twice the margin {margin} so that every pixel keeps a "
                         "positive weight; lower the margin or raise the overlap.")
    if batch_size is not None and batch_size < 1:  # None: sized per device when the predictor is made
        raise ConfigError(f"window batch size must be >= 1, got {batch_size}.")
    step = (window - overlap) // align * align
    if step < align or (margin > 0 and window - step <= 2 * margin):
        raise ConfigError(f"window {window} minus overlap {overlap} must be at least the network stride {align}, leaving an "
                         f"overlap above twice the margin {margin}; lower the overlap or raise the window size.")


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
    def for_scene(cls, height: int, width: int, *, window: int, overlap: int, margin: int, align: int = 1) -> "WindowGrid":
        hp, wp = max(round_up(height, align), 1), max(round_up(width, align), 1)
        win_h, win_w = min(window, hp), min(window, wp)
        hp, wp = max(hp, win_h), max(wp, win_w)
        stride = (window - overlap) // align * align  # check_windows guarantees stride >= align
        return cls(height, width, hp, wp, win_h, win_w, stride, margin, max(1, overlap // 2 - margin),
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


Reader = Callable[[list[tuple[int, int]]], tuple[torch.Tensor, torch.Tensor]]
"""Window starts -> both dates' windows there, ``(N, C, win_h, win_w)`` float32 each: one batch at a time."""
WindowOutputs = dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]]


def run_windows(fn: WindowFn, grid: WindowGrid, starts: list[tuple[int, int]], read: Reader, batch_size: int,
                device: torch.device) -> Iterator[tuple[tuple[int, int], torch.Tensor, torch.Tensor | None]]:
    """``fn`` on the windows at ``starts``, ``batch_size`` at a time: ``(start, logits (K, h, w), distance (h, w))``."""
    for first in range(0, len(starts), batch_size):
        chunk = starts[first : first + batch_size]
        wa, wb = read(chunk)
        out = fn(wa.to(device, non_blocking=True), wb.to(device, non_blocking=True))
        logits = out["logits"].float().cpu()
        dist = out.get("distance")
        if dist is not None:
            dist = F.interpolate(dist.float(), size=(grid.win_h, grid.win_w), mode="bilinear", align_corners=False)[:, 0].cpu()
        for k, start in enumerate(chunk):
            yield start, logits[k], dist[k] if dist is not None else None


@dataclass
class Sums:
    """Weighted sums of window outputs over a region: ``logits`` ``(K, h, w)``, ``distance`` ``(h, w)``, ``weight``."""

    logits: torch.Tensor | None
    distance: torch.Tensor | None
    weight: torch.Tensor

    def rows(self, top: int, bottom: int) -> "Sums":
        """Rows ``[top, bottom)`` of the region (views)."""
        return Sums(self.logits[:, top:bottom] if self.logits is not None else None,
                    self.distance[top:bottom] if self.distance is not None else None, self.weight[top:bottom])

    def columns(self, left: int, right: int) -> "Sums":
        """Columns ``[left, right)`` of the region (views)."""
        return Sums(self.logits[:, :, left:right] if self.logits is not None else None,
                    self.distance[:, left:right] if self.distance is not None else None, self.weight[:, left:right])

    def copy_from(self, other: "Sums") -> None:
        """Overwrite these sums (views included) with ``other``'s, of the same shape."""
        self.weight.copy_(other.weight)
        if self.logits is not None:
            self.logits.copy_(other.logits)
        if self.distance is not None:
            self.distance.copy_(other.distance)

    @classmethod
    def zeros(cls, like: "Sums", height: int, width: int) -> "Sums":
        """Zero sums of ``height x width`` with ``like``'s classes and outputs."""
        return cls(torch.zeros(like.logits.shape[0], height, width) if like.logits is not None else None,
                   torch.zeros(height, width) if like.distance is not None else None, torch.zeros(height, width))

    def blended(self) -> dict[str, torch.Tensor | None]:
        return {"logits": self.logits / self.weight,
                "distance": self.distance / self.weight if self.distance is not None else None}


def accumulate(
    fn: WindowFn,
    grid: WindowGrid,
    region: tuple[int, int, int, int],
    read: Reader,
    *,
    starts: list[tuple[int, int]],
    batch_size: int,
    device: torch.device,
    known: WindowOutputs | None = None,
    keep: Callable[[int, int], bool] | None = None,
    on_window: Callable[[], None] | None = None,
    initial: Sums | None = None,
) -> tuple[Sums, WindowOutputs]:
    """The weighted sums of the windows at ``starts`` (row-major) over ``region = (y0, y1, x0, x1)``.

    ``initial`` holds sums already made over the region's first rows (by windows that come before
    ``starts`` in row-major order): they are the starting values there, so a pixel's sum runs over
    its windows in the same order however the scene is cut. Memory is the region's sums, one batch
    of windows, and the outputs the caller asks to ``keep``.

    Args:
        fn: the network on a batch of window pairs (see :func:`sliding_window`).
        read: window starts -> ``(a, b)``, the ``(N, C, win_h, win_w)`` float windows starting there.
        starts: the windows to add, in row-major order.
        known: outputs of windows computed before (for a neighbouring block), used instead of running them again.
        keep: which window outputs to return, for the next block (default: none).
        on_window: called after each window that was run.
        initial: sums over rows ``[y0, y0 + h0)`` of the region to start from.
    """
    y0, y1, x0, x1 = region
    known = known or {}
    fresh = run_windows(fn, grid, [s for s in starts if s not in known], read, batch_size, device)
    kept: WindowOutputs = {}
    sums = Sums(None, None, torch.zeros(y1 - y0, x1 - x0))
    for start in starts:
        if start in known:
            logits, dist = known[start]
        else:
            _, logits, dist = next(fresh)
            if on_window is not None:
                on_window()
        if keep is not None and keep(*start):
            kept[start] = (logits, dist)
        if sums.logits is None:
            sums.logits = torch.zeros(logits.shape[0], y1 - y0, x1 - x0)
            sums.distance = torch.zeros(y1 - y0, x1 - x0) if dist is not None else None
            if initial is not None:
                sums.rows(0, initial.weight.shape[0]).copy_from(initial)
        y, x = start
        ty0, ty1 = max(y, y0), min(y + grid.win_h, y1)
        tx0, tx1 = max(x, x0), min(x + grid.win_w, x1)
        w = grid.weight(y, x)[ty0 - y : ty1 - y, tx0 - x : tx1 - x]
        sums.logits[:, ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0].addcmul_(logits[:, ty0 - y : ty1 - y, tx0 - x : tx1 - x], w)
        sums.weight[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0] += w
        if sums.distance is not None:
            sums.distance[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0].addcmul_(dist[ty0 - y : ty1 - y, tx0 - x : tx1 - x], w)
    return sums, kept


def blend_region(
    fn: WindowFn,
    grid: WindowGrid,
    region: tuple[int, int, int, int],
    read: Reader,
    *,
    batch_size: int,
    device: torch.device,
) -> dict[str, torch.Tensor | None]:
    """The blended outputs over ``region = (y0, y1, x0, x1)``: every window that touches it, added in row-major order.

    Every pixel sums the same windows in the same order whatever the region (and however
    :mod:`densechange.finetune.inference.streaming` cuts a scene into blocks), so a scene predicted
    block by block equals the scene predicted whole, up to the rounding of the network's kernels,
    which may depend on how windows are batched.

    Returns:
        ``{"logits": (K, h, w), "distance": (h, w) | None}``.
    """
    y0, y1, x0, x1 = region
    sums, _ = accumulate(fn, grid, region, read, starts=grid.touching(y0, y1, x0, x1), batch_size=batch_size,
                         device=device)
    return sums.blended()


def sliding_window(
    fn: WindowFn,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    window: int = DEFAULT_WINDOWS.size,
    overlap: int = DEFAULT_WINDOWS.overlap,
    margin: int = DEFAULT_WINDOWS.margin,
    batch_size: int = DEFAULT_WINDOWS.batch_size,
    align: int = 1,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor | None]:
    """Blend ``fn``'s outputs over overlapping windows of one image pair held in memory.

    Args:
        fn: ``(a, b) -> {"logits": (N, K, h, w), "distance": (N, 1, h', w') | None}`` for a batch
            of ``N`` windows ``(N, C, h, w)``; a coarser distance map is upsampled bilinearly.
        a, b: ``(C, H, W)`` images of the two dates, any size.
        window, overlap, margin: window side, overlap between neighbours, dead margin (pixels).
        batch_size: windows per call of ``fn``.
        align: window starts and padded size are multiples of it.
        device: where ``fn`` runs; the outputs come back on the CPU.
    Returns:
        ``{"logits": (K, H, W), "distance": (H, W) or None}`` on the CPU, float32.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"both dates must be (C, H, W) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    check_windows(window, overlap, margin, batch_size, align)
    _, h, w = a.shape
    grid = WindowGrid.for_scene(h, w, window=window, overlap=overlap, margin=margin, align=align)
    if (grid.padded_h, grid.padded_w) != (h, w):
        pad = (0, grid.padded_w - w, 0, grid.padded_h - h)
        a = F.pad(a[None], pad, mode="replicate")[0]
        b = F.pad(b[None], pad, mode="replicate")[0]

    def read(starts: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(torch.stack([t[:, y : y + grid.win_h, x : x + grid.win_w] for y, x in starts]) for t in (a, b))

    device = torch.device(device) if device is not None else a.device
    return blend_region(fn, grid, (0, h, 0, w), read, batch_size=batch_size, device=device)
