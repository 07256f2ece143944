"""A change model ready to predict: windows, device, no gradients, one rule for every image size.

The PyTorch backend of :class:`densechange.finetune.inference.backend.Predictor`: it runs the
network on batches of windows, and the base class turns that into predictions of any size (whole
when an image fits one window, else blended windows).

Example:
    >>> predictor, meta = ChangePredictor.from_checkpoint("runs/x/best.safetensors")   # DEFAULT_WINDOWS
    >>> out = predictor(a, b)                    # a, b: (C, H, W) in [0, 1]
    >>> change = out["logits"].argmax(0)         # (H, W)

Speed: a predictor that owns its model (``optimise=True``, as :meth:`ChangePredictor.from_checkpoint`
does) folds the batch norms into the convolutions (:mod:`densechange.engine.folding`) and stores
the network channels-last, the layout the CPU's and cuDNN's fast convolution kernels use; windows
are converted to that layout once per batch. ``compile=True`` adds ``torch.compile`` (its first
batch pays the compilation). The network runs under ``torch.inference_mode``. All of these change
the outputs by rounding only.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from densechange.engine.distributed import resolve_device
from densechange.engine.errors import ConfigError
from densechange.engine.folding import FoldReport, fold_batch_norms
from densechange.engine.precision import autocast_for

from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.deepcl.model import ChangeModel
from densechange.finetune.inference.backend import Prediction, Predictor
from densechange.finetune.inference.windows import DEFAULT_WINDOWS, WindowSettings, round_up

CHECK_SIDE = 256  # side of the random window pair that finds and checks the foldable batch norms


class ChangePredictor(Predictor):
    """Full-size prediction with a :class:`ChangeModel`.

    Args:
        model: the detector (put in eval mode here).
        windows: sliding-window settings (see :mod:`densechange.finetune.inference.windows`); a null
            ``batch_size`` sizes batches for ``device``.
        device: where the network runs; the full-size outputs stay on the CPU.
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast for the network (outputs are float32).
        optimise: the predictor owns ``model``: fold its batch norms and make it channels-last
            (leave False for a model that is still training, e.g. during validation).
        compile: ``torch.compile`` the network (the first window batch compiles it).
    """

    def __init__(self, model: ChangeModel, windows: WindowSettings = DEFAULT_WINDOWS, *,
                 device: torch.device | str = "cpu", precision: str = "fp32", optimise: bool = False,
                 compile: bool = False) -> None:
        windows.check(model.stride)
        if precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision is '{precision}'; valid values: fp32, bf16, fp16.")
        self.device, self.precision = torch.device(device), precision
        self.model = model.to(self.device).eval()
        self.windows = windows
        self.folding: FoldReport | None = None
        if optimise:
            side = min(windows.size, round_up(CHECK_SIDE, self.model.stride))
            g = torch.Generator().manual_seed(0)
            pair = [torch.rand(1, self.in_chans, side, side, generator=g).to(self.device) for _ in range(2)]
            self.model, self.folding = fold_batch_norms(self.model, lambda m: m(*pair))
            self.model = self.model.to(memory_format=torch.channels_last)
        weights = [p for p in self.model.parameters() if p.dim() == 4]
        self.channels_last = bool(weights) and weights[0].is_contiguous(memory_format=torch.channels_last)
        # freezing: weights become constants, so inductor folds and prepacks them (inference only)
        self.network = torch.compile(self.model, options={"freezing": True}) if compile else self.model

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, windows: WindowSettings = DEFAULT_WINDOWS, *,
                        device: str | torch.device = "auto", trust_edited: bool | None = None,
                        **settings: Any) -> tuple["ChangePredictor", dict]:
        """Load a ``change-model`` file into an optimised predictor; returns it and the file's metadata.

        ``device``: ``auto``, ``cpu`` or ``cuda``, or a resolved device (a process's own GPU under torchrun).
        """
        model, meta = load_change_model(path, trust_edited=trust_edited)
        device = device if isinstance(device, torch.device) else resolve_device(device)
        return cls(model, windows, device=device, optimise=True, **settings), meta

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

    def forward_windows(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """The network on a batch of window pairs ``(N, C, h, w)`` (sizes multiples of the stride), float32 out."""
        n, full = a.shape[0], self.batch(*a.shape[-2:])
        if self.network is not self.model and n < full:  # a full batch: no recompilation for the last one
            a, b = (torch.cat([t, t[-1:].expand(full - n, -1, -1, -1)]) for t in (a, b))
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        a = a.to(self.device, torch.float32).contiguous(memory_format=layout)
        b = b.to(self.device, torch.float32).contiguous(memory_format=layout)
        with torch.inference_mode(), autocast_for(self.device, self.precision):
            out = self.network(a, b)
        return {k: v[:n].float() if v is not None else None for k, v in out.items()}
