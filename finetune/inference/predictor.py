"""A change model ready to predict: windows, device, no gradients, one rule for every image size.

Images no larger than one window go through the network whole (batched when several have the same
size); larger ones through :func:`densechange.finetune.inference.windows.sliding_window`. Both paths pad to a multiple
of the network stride the same way, so a 256x256 tile gets the same prediction whether it is
scored alone, in a batch, or during validation.

Example:
    >>> predictor = ChangePredictor.from_checkpoint("runs/x/best.safetensors", window=512)
    >>> out = predictor(a, b)                    # a, b: (C, H, W) in [0, 1]
    >>> change = out["logits"].argmax(0)         # (H, W)
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from densechange.datasets.errors import DatasetError
from densechange.engine.distributed import resolve_device
from densechange.engine.errors import ConfigError
from densechange.engine.loop import autocast_for

from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.deepcl.model import ChangeModel
from densechange.finetune.inference.windows import check_windows, round_up, sliding_window


class ChangePredictor:
    """Full-size prediction with a :class:`ChangeModel`.

    Args:
        model: the detector (put in eval mode here).
        window, overlap, margin, batch_size: sliding-window settings (see :mod:`densechange.finetune.inference.windows`).
        device: where the network runs; the full-size outputs stay on the CPU.
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast for the network (outputs are float32).
    """

    def __init__(self, model: ChangeModel, *, window: int = 256, overlap: int = 64, margin: int = 8, batch_size: int = 8,
                 device: torch.device | str = "cpu", precision: str = "fp32") -> None:
        check_windows(window, overlap, margin, batch_size, model.stride)
        if precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision is '{precision}'; valid values: fp32, bf16, fp16.")
        self.device, self.precision = torch.device(device), precision
        self.model = model.to(self.device).eval()
        self.window, self.overlap, self.margin, self.batch_size = window, overlap, margin, batch_size

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: str = "auto", **windows: Any) -> tuple["ChangePredictor", dict]:
        """Load a ``change-model`` file; returns the predictor and the file's metadata."""
        model, meta = load_change_model(path)
        return cls(model, device=resolve_device(device), **windows), meta

    @property
    def in_chans(self) -> int:
        return self.model.in_chans

    @property
    def stride(self) -> int:
        """The network's coarsest stride: window starts and sizes are multiples of it."""
        return self.model.stride

    @property
    def has_distance(self) -> bool:
        return self.model.metric_head is not None

    @torch.no_grad()
    def forward_windows(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """The network on a batch of window pairs ``(N, C, h, w)`` (sizes multiples of the stride), float32 out."""
        with autocast_for(self.device, self.precision):
            out = self.model(a.to(self.device).float(), b.to(self.device).float())
        return {k: v.float() if v is not None else None for k, v in out.items()}

    def _check(self, a: torch.Tensor, b: torch.Tensor) -> None:
        if a.shape != b.shape:
            raise DatasetError(f"the two dates differ in size or bands: {tuple(a.shape)} vs {tuple(b.shape)} (C, H, W); "
                             "co-register and crop them to the same grid first.")
        if a.shape[-3] != self.in_chans:
            raise DatasetError(f"the images have {a.shape[-3]} bands but the model was trained on {self.in_chans}.")

    @torch.no_grad()
    def predict_batch(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor | None]:
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
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """One pair ``(C, H, W)`` of any size -> ``{"logits": (K, H, W), "distance": (H, W) | None}`` on the CPU."""
        self._check(a, b)
        if max(a.shape[-2:]) <= self.window:
            out = self.predict_batch(a[None], b[None])
            return {"logits": out["logits"][0], "distance": out["distance"][0] if out["distance"] is not None else None}
        return sliding_window(self.forward_windows, a.cpu().float(), b.cpu().float(), window=self.window, overlap=self.overlap,
                              margin=self.margin, batch_size=self.batch_size, align=self.stride, device=self.device)
