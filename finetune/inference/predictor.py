"""A change model ready to predict: windows, device, no gradients, one rule for every image size.

The PyTorch backend of :class:`densechange.finetune.inference.backend.Predictor`: it runs the
network on batches of windows, and :class:`~densechange.finetune.inference.backend.WindowedPredictor`
turns that into predictions of any size (whole when an image fits one window, else blended windows).

Example:
    >>> predictor, meta = ChangePredictor.from_checkpoint("runs/x/best.safetensors", window=512)
    >>> out = predictor(a, b)                    # a, b: (C, H, W) in [0, 1]
    >>> change = out["logits"].argmax(0)         # (H, W)
"""
from __future__ import annotations

import os
from typing import Any

import torch

from densechange.engine.distributed import resolve_device
from densechange.engine.errors import ConfigError
from densechange.engine.precision import autocast_for

from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.deepcl.model import ChangeModel
from densechange.finetune.inference.backend import Prediction, WindowedPredictor
from densechange.finetune.inference.windows import DEFAULT_WINDOWS, check_windows


class ChangePredictor(WindowedPredictor):
    """Full-size prediction with a :class:`ChangeModel`.

    Args:
        model: the detector (put in eval mode here).
        window, overlap, margin, batch_size: sliding-window settings (see :mod:`densechange.finetune.inference.windows`).
        device: where the network runs; the full-size outputs stay on the CPU.
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast for the network (outputs are float32).
    """

    def __init__(self, model: ChangeModel, *, window: int = DEFAULT_WINDOWS.size, overlap: int = DEFAULT_WINDOWS.overlap,
                 margin: int = DEFAULT_WINDOWS.margin, batch_size: int = DEFAULT_WINDOWS.batch_size,
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
    def forward_windows(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """The network on a batch of window pairs ``(N, C, h, w)`` (sizes multiples of the stride), float32 out."""
        with autocast_for(self.device, self.precision):
            out = self.model(a.to(self.device).float(), b.to(self.device).float())
        return {k: v.float() if v is not None else None for k, v in out.items()}
