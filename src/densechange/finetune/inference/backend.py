"""The predictor contract: what a prediction backend provides, and the full-size prediction all backends share.

Streaming, scoring and validation take any :class:`Predictor`. A backend, PyTorch
(:class:`~densechange.finetune.inference.predictor.ChangePredictor`) or ONNX Runtime
(:class:`~densechange.finetune.onnx.runtime.OnnxPredictor`), derives from it and says only how to
run one batch of windows (:meth:`Predictor.forward_windows`), what its network takes and gives
(bands, stride, a distance map or not), its window settings and its device. Everything above one
batch is written here once, so both backends predict every image size the same way: a pair held
in memory and a scene streamed from files go the same straight path, from the predictor to the
scene's windows (:class:`~densechange.finetune.inference.scene.Scene`) to their blend
(:class:`~densechange.finetune.inference.windows.Sums`), in :meth:`Predictor.blocks`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from densechange.datasets.errors import DatasetError

from densechange.finetune.inference.scene import Block, BlockRead, BlockResult, Scene
from densechange.finetune.inference.windows import Sums, WindowGrid, WindowOutput, WindowSettings, round_up

Prediction = dict[str, torch.Tensor | None]
Known = dict[tuple[int, int], WindowOutput]  # window start -> its outputs, kept for the next block


class Predictor(ABC):
    """A change model ready to predict pairs of any size.

    Images no larger than one window go through the network whole (batched when several have the
    same size); larger ones through the blended windows of a
    :class:`~densechange.finetune.inference.scene.Scene`. Both paths pad to a multiple of the
    network stride the same way, so a 256x256 tile gets the same prediction whether it is scored
    alone, in a batch, or during validation.

    A backend sets ``windows`` (its sliding-window settings) and ``device`` (where inputs go).
    """

    windows: WindowSettings
    device: torch.device

    @property
    @abstractmethod
    def in_chans(self) -> int:
        """Bands of one date."""

    @property
    @abstractmethod
    def stride(self) -> int:
        """The network's coarsest stride: window starts and sizes are multiples of it."""

    @property
    @abstractmethod
    def has_distance(self) -> bool:
        """Whether the model has the metric branch, hence a distance map."""

    @abstractmethod
    def forward_windows(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """The network on a batch of window pairs ``(N, C, h, w)`` (sizes multiples of the stride), float32 out:
        ``{"logits": (N, K, h, w), "distance": (N, 1, h', w') | None}``."""

    def batch(self, height: int, width: int) -> int:
        """Windows, or whole images, of ``height x width`` (padded to the stride) per call of :meth:`forward_windows`."""
        return self.windows.batch(round_up(height, self.stride), round_up(width, self.stride), self.device)

    def _check(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if a.shape != b.shape:
            raise DatasetError(f"the two dates differ in size or bands: {tuple(a.shape)} vs {tuple(b.shape)} (C, H, W); "
                               "co-register and crop them to the same grid first.")
        if a.shape[-3] != self.in_chans:
            raise DatasetError(f"the images have {a.shape[-3]} bands but the model was trained on {self.in_chans}.")

    @torch.no_grad()
    def predict_batch(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """Pairs ``(B, C, H, W)`` of one size -> ``{"logits": (B, K, H, W), "distance": (B, H, W) | None}`` on the CPU."""
        self._check(a, b)
        h, w = a.shape[-2:]
        if max(h, w) > self.windows.size:
            outs = [self(x, y) for x, y in zip(a, b)]
            dist = [o["distance"] for o in outs]
            return {"logits": torch.stack([o["logits"] for o in outs]),
                    "distance": torch.stack(dist) if dist[0] is not None else None}
        hp, wp = round_up(h, self.stride), round_up(w, self.stride)
        pad = (0, wp - w, 0, hp - h)
        if any(pad):
            a, b = F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate")
        logits, distance = [], []
        size = self.batch(hp, wp)
        for i in range(0, a.shape[0], size):
            out = self.forward_windows(a[i : i + size], b[i : i + size])
            logits.append(out["logits"].float()[..., :h, :w].cpu())
            if out["distance"] is not None:
                d = F.interpolate(out["distance"].float(), size=(hp, wp), mode="bilinear", align_corners=False)
                distance.append(d[:, 0, :h, :w].cpu())
        return {"logits": torch.cat(logits), "distance": torch.cat(distance) if distance else None}

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """One pair ``(C, H, W)`` of any size -> ``{"logits": (K, H, W), "distance": (H, W) | None}`` on the CPU."""
        self._check(a, b)
        if max(a.shape[-2:]) <= self.windows.size:
            out = self.predict_batch(a[None], b[None])
            return {"logits": out["logits"][0], "distance": out["distance"][0] if out["distance"] is not None else None}
        return next(self.blocks(Scene.in_memory(a, b, self.windows, self.stride))).outputs  # one block: the whole pair

    def blocks(self, scene: Scene, on_window: Callable[[], None] | None = None) -> Iterator[BlockResult]:
        """Each block of ``scene``: its finished region, its blended float outputs and where both dates hold data.

        Blocks come row by row; every window runs once (``on_window`` is called after each); the
        scene's lead blocks (:meth:`Scene.band <densechange.finetune.inference.scene.Scene.band>`) run
        but give no result. The
        next block is read and decoded on a second thread while the network runs on this one (GDAL
        releases the interpreter while it decodes), so the network does not wait for the disk; only
        that thread reads the dates. The scene's bands are checked at once, the blocks predicted as
        they are asked for.
        """
        if scene.bands != self.in_chans:
            raise DatasetError(f"{scene.name} has {scene.bands} bands but the model was trained on {self.in_chans}.")
        return self._blocks(scene, on_window)

    @torch.no_grad()
    def _blocks(self, scene: Scene, on_window: Callable[[], None] | None) -> Iterator[BlockResult]:
        grid, blocks = scene.grid, scene.blocks
        carried: Sums | None = None  # partial sums of the rows the block row above reached into, scene-wide
        below: Sums | None = None
        known: Known = {}
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="densechange-read") as reader:
            pending = reader.submit(scene.read, blocks[0])
            for i, block in enumerate(blocks):
                read = pending.result()
                if i + 1 < len(blocks):
                    pending = reader.submit(scene.read, blocks[i + 1])
                if block.left == 0:
                    known, carried, below = {}, below, None
                initial = carried.columns(block.left, block.right) if carried is not None else None
                sums, known = self._sums(grid, block, read, known, initial, on_window)
                row, height = block.row, sums.weight.shape[0]
                finished = row.bottom - row.top
                if height > finished:  # rows the windows reach below the block row: their sums start the next row's
                    if below is None:
                        below = sums.zeros_like((row.bottom, row.top + height, 0, grid.width))
                    below.columns(block.left, block.right).copy_from(sums.rows(finished, height))
                if i < scene.lead:  # run only for the sums it carries down
                    continue
                region = (row.top, row.bottom, block.left, block.right)
                yield BlockResult(region, sums.rows(0, finished).blended(), read.valid_in(region))

    def _sums(self, grid: WindowGrid, block: Block, read: BlockRead, known: Known, initial: Sums | None,
              on_window: Callable[[], None] | None) -> tuple[Sums, Known]:
        """The weighted sums of the block's windows over its rows and those they reach, and the outputs kept for the
        block to its right.

        ``known`` outputs (kept by the block to the left) are used instead of running their windows
        again; ``initial`` holds the sums that the block row above made over the first rows, the
        starting values there, so a pixel's sum runs over its windows in the same order however the
        scene is cut. Memory is the region's sums, one batch of windows, and the kept outputs.
        """
        row = block.row
        reach = max(row.reach, row.top + (initial.weight.shape[0] if initial is not None else 0))
        fresh = self._run(grid, read, [s for s in block.starts if s not in known])
        sums, kept = None, {}
        for start in block.starts:
            output = known.get(start)
            if output is None:
                output = next(fresh)
                if on_window is not None:
                    on_window()
            if sums is None:
                sums = Sums.zeros(output[0].shape[0], output[1] is not None, (row.top, reach, block.left, block.right))
                if initial is not None:
                    sums.rows(0, initial.weight.shape[0]).copy_from(initial)
            sums.add(grid, start, output)
            if start[1] + grid.win_w > block.right:
                kept[start] = output
        return sums, kept

    def _run(self, grid: WindowGrid, read: BlockRead, starts: list[tuple[int, int]]) -> Iterator[WindowOutput]:
        """The network on the windows at ``starts``, a batch at a time: each window's logits and distance on the CPU."""
        size = self.batch(grid.win_h, grid.win_w)
        for first in range(0, len(starts), size):
            wa, wb = read.windows(grid, starts[first : first + size])
            out = self.forward_windows(wa.to(self.device, non_blocking=True), wb.to(self.device, non_blocking=True))
            logits = out["logits"].float().cpu()
            dist = out.get("distance")
            if dist is not None:
                dist = F.interpolate(dist.float(), size=(grid.win_h, grid.win_w), mode="bilinear",
                                     align_corners=False)[:, 0].cpu()
            for k in range(logits.shape[0]):
                yield logits[k], dist[k] if dist is not None else None
