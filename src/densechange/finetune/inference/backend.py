"""What a prediction backend offers, and the window logic every backend shares.

Streaming (:mod:`densechange.finetune.inference.streaming`) and scoring
(:mod:`densechange.finetune.inference.scoring`) need a backend that runs the network on batches of
window pairs and knows its window settings: :class:`Predictor` says exactly what they use. Both
backends, PyTorch (:class:`~densechange.finetune.inference.predictor.ChangePredictor`) and ONNX
Runtime (:class:`~densechange.finetune.onnx.runtime.OnnxPredictor`), satisfy it by deriving from
:class:`WindowedPredictor`, which turns ``forward_windows`` into full-size predictions the same way
for both: a backend only says how to run one batch of windows.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from densechange.datasets.errors import DatasetError

from densechange.finetune.inference.windows import round_up, sliding_window

Prediction = dict[str, torch.Tensor | None]


@runtime_checkable
class Predictor(Protocol):
    """A change model ready to predict, as streaming and scoring use it."""

    window: int
    overlap: int
    margin: int
    batch_size: int
    device: torch.device

    @property
    def in_chans(self) -> int:
        """Bands of one date."""
        ...

    @property
    def stride(self) -> int:
        """The network's coarsest stride: window starts and sizes are multiples of it."""
        ...

    @property
    def has_distance(self) -> bool:
        """Whether the model has the metric branch, hence a distance map."""
        ...

    def forward_windows(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """The network on a batch of window pairs ``(N, C, h, w)`` (sizes multiples of the stride), float32 out."""
        ...

    def predict_batch(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """Pairs ``(B, C, H, W)`` of one size -> ``{"logits": (B, K, H, W), "distance": (B, H, W) | None}``."""
        ...


class WindowedPredictor:
    """Full-size prediction from ``forward_windows``: one rule for every image size, whatever the backend.

    Images no larger than one window go through the network whole (batched when several have the
    same size); larger ones through :func:`densechange.finetune.inference.windows.sliding_window`.
    Both paths pad to a multiple of the network stride the same way, so a 256x256 tile gets the
    same prediction whether it is scored alone, in a batch, or during validation. A subclass sets
    the window attributes and ``device`` and provides ``in_chans``, ``stride`` and ``forward_windows``.
    """

    window: int
    overlap: int
    margin: int
    batch_size: int
    device: torch.device

    @property
    def in_chans(self) -> int:
        raise NotImplementedError

    @property
    def stride(self) -> int:
        raise NotImplementedError

    def forward_windows(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        raise NotImplementedError

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
        if max(h, w) > self.window:
            outs = [self(x, y) for x, y in zip(a, b)]
            dist = [o["distance"] for o in outs]
            return {"logits": torch.stack([o["logits"] for o in outs]),
                    "distance": torch.stack(dist) if dist[0] is not None else None}
        hp, wp = round_up(h, self.stride), round_up(w, self.stride)
        pad = (0, wp - w, 0, hp - h)
        if any(pad):
            a, b = F.pad(a, pad, mode="replicate"), F.pad(b, pad, mode="replicate")
        logits, distance = [], []
        for i in range(0, a.shape[0], self.batch_size):
            out = self.forward_windows(a[i : i + self.batch_size], b[i : i + self.batch_size])
            logits.append(out["logits"].float()[..., :h, :w].cpu())
            if out["distance"] is not None:
                d = F.interpolate(out["distance"].float(), size=(hp, wp), mode="bilinear", align_corners=False)
                distance.append(d[:, 0, :h, :w].cpu())
        return {"logits": torch.cat(logits), "distance": torch.cat(distance) if distance else None}

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """One pair ``(C, H, W)`` of any size -> ``{"logits": (K, H, W), "distance": (H, W) | None}`` on the CPU."""
        self._check(a, b)
        if max(a.shape[-2:]) <= self.window:
            out = self.predict_batch(a[None], b[None])
            return {"logits": out["logits"][0], "distance": out["distance"][0] if out["distance"] is not None else None}
        return sliding_window(self.forward_windows, a.cpu().float(), b.cpu().float(), window=self.window,
                              overlap=self.overlap, margin=self.margin, batch_size=self.batch_size, align=self.stride,
                              device=self.device)
