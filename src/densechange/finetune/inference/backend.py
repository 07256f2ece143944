"""The predictor contract: what a prediction backend provides, and the full-size prediction all backends share.

Streaming, scoring and validation take any :class:`Predictor`. A backend, PyTorch
(:class:`~densechange.finetune.inference.predictor.ChangePredictor`) or ONNX Runtime
(:class:`~densechange.finetune.onnx.runtime.OnnxPredictor`), derives from it and says only how to
run one batch of windows (:meth:`Predictor.forward_windows`), what its network takes and gives
(bands, stride, a distance map or not), its window settings and its device. Everything above one
batch is written here once, so both backends predict every image size the same way.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from densechange.datasets.errors import DatasetError

from densechange.finetune.inference.scene import Scene
from densechange.finetune.inference.windows import WindowSettings, round_up

Prediction = dict[str, torch.Tensor | None]


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
        return Scene.in_memory(a, b, self).blend(self)
