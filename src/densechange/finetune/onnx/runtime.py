"""ONNX Runtime as a prediction backend: an exported change model run without PyTorch's network code.

:class:`OnnxPredictor` is a :class:`~densechange.finetune.inference.backend.Predictor`, like the PyTorch
:class:`~densechange.finetune.inference.predictor.ChangePredictor`: it runs batches of windows
(``forward_windows``) and shares the full-size logic of the base class, so scene streaming and
scoring take either. It feeds the graph exactly what the PyTorch path feeds the model (window batches in the
checkpoint's units, see :mod:`densechange.finetune.onnx.graph`), so both backends give the same
change maps. The exception is a plain ViT's fixed-size file on an image smaller than its window: the
file sees the image padded to the window, PyTorch sees it at its own size, and global attention
makes the two differ a little.

onnxruntime is an optional dependency (``pip install 'densechange[onnx]'``); without it a ``.onnx``
checkpoint is a one-line error that says how to install it.

Example:
    >>> predictor = OnnxPredictor.from_file("model.onnx", size=256, overlap=64)
    >>> out = predictor.forward_windows(a, b)    # (N, C, h, w) in [0, 1] -> {"logits", "distance"}
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from densechange.checkpoints import CheckpointError
from densechange.engine.errors import ConfigError

from densechange.finetune.onnx.metadata import read_metadata
from densechange.finetune.inference.backend import Prediction, Predictor
from densechange.finetune.inference.windows import DEFAULT_WINDOWS, WindowSettings, round_up

INSTALL_HINT = "pip install 'densechange[onnx]' (or: pip install onnx onnxruntime)"


def require(module: str, what: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or raise a :class:`ConfigError` that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs the '{module}' package, which is not installed: {INSTALL_HINT}.") from None


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for ``device`` ``auto``, ``cpu`` or ``cuda``."""
    ort = require("onnxruntime", "running an .onnx model")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ConfigError(f"device=cuda: this onnxruntime offers {available}; install onnxruntime-gpu for CUDA, "
                          "or use device=cpu.")
    return ["CPUExecutionProvider"]


def open_session(model: str | os.PathLike | bytes, device: str = "cpu") -> Any:
    """An ``onnxruntime.InferenceSession`` on a file or on serialised model bytes."""
    ort = require("onnxruntime", "running an .onnx model")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, providers=providers_for(device))
    except Exception as err:  # onnxruntime raises its own exception types for unreadable files
        if isinstance(model, bytes):
            raise
        raise CheckpointError(f"{model}: onnxruntime cannot load it ({str(err).splitlines()[0]}); the file is damaged "
                              "or not an ONNX model.") from None


def file_windows(meta: dict[str, Any], size: int | None = None, overlap: int | None = None, margin: int | None = None,
                 batch_size: int | None = None) -> WindowSettings:
    """The windows to run an exported file with: those given, else the file's own.

    The window defaults to a fixed-size file's own size (a plain ViT's), else to
    :data:`~densechange.finetune.inference.windows.DEFAULT_WINDOWS`; at the window the file was
    exported for, the overlap and margin default to those it records.
    """
    size = size or meta.get("fixed_size") or DEFAULT_WINDOWS.size
    recorded = meta if size == meta.get("window") else {}
    return WindowSettings(size, overlap if overlap is not None else int(recorded.get("overlap", DEFAULT_WINDOWS.overlap)),
                          margin if margin is not None else int(recorded.get("margin", DEFAULT_WINDOWS.margin)),
                          batch_size)


class OnnxPredictor(Predictor):
    """A change model exported by ``densechange export``, run by ONNX Runtime.

    Args:
        session: an ``onnxruntime.InferenceSession`` of a ``pair`` or ``stacked`` export.
        windows: sliding-window settings (see :mod:`densechange.finetune.inference.windows`); by
            default the file's own (:func:`file_windows`), with batches sized for the provider's device.
        source: the file's name, for messages.
    """

    def __init__(self, session: Any, windows: WindowSettings | None = None, *, source: str = "model.onnx") -> None:
        meta = read_metadata(session)
        missing = [k for k in ("input_form", "bands", "stride") if k not in meta]
        if missing:
            raise CheckpointError(f"{source}: an ONNX file without the toolkit's metadata ({', '.join(missing)} "
                                  "missing); export change models with `densechange export`.")
        self.form = meta["input_form"]
        if self.form == "deepness":
            raise ConfigError(f"{source} is the QGIS Deepness form (a fixed {meta.get('tile_size')} px tile, probabilities "
                              "out); for densechange predict export it with form=pair or form=stacked.")
        self.session, self.metadata = session, meta
        self.outputs = [o.name for o in session.get_outputs()]
        self.fixed_size: int | None = meta.get("fixed_size")
        windows = windows or file_windows(meta)
        if self.fixed_size is not None and windows.size != self.fixed_size:
            raise ConfigError(f"{source} takes {self.fixed_size}x{self.fixed_size} windows only (its plain ViT's "
                              f"position table was resampled for that size at export); set window.size={self.fixed_size} "
                              f"(the file's own overlap and margin: window.overlap={meta.get('overlap')} "
                              f"window.margin={meta.get('margin')}), or predict with the .safetensors checkpoint for "
                              "other windows.")
        windows.check(self.stride)
        self.windows = windows
        self.on_gpu = "CUDAExecutionProvider" in session.get_providers()
        self.device = torch.device("cpu")  # inputs and outputs stay on the host; the provider picks where it runs

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, device: str = "auto", precision: str = "fp32",
                  **windows: int | None) -> "OnnxPredictor":
        """Load an exported ``.onnx`` file for ``device`` ``auto``, ``cpu`` or ``cuda``; ``windows``: ``size``, ``overlap``,
        ``margin``, ``batch_size`` to use instead of the file's own (see :func:`file_windows`)."""
        require("onnxruntime", f"running {Path(path).name}")
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found.")
        if precision != "fp32":
            raise ConfigError(f"precision={precision}: an ONNX model runs in the float32 of its graph; use fp32.")
        session = open_session(path, device)
        return cls(session, file_windows(read_metadata(session), **windows), source=str(path))

    def batch(self, height: int, width: int) -> int:
        """As :meth:`Predictor.batch`, for the device the provider runs on (the inputs stay on the host)."""
        return self.windows.batch(round_up(height, self.stride), round_up(width, self.stride),
                                  "cuda" if self.on_gpu else "cpu")

    @property
    def stride(self) -> int:
        return int(self.metadata["stride"])

    @property
    def in_chans(self) -> int:
        return int(self.metadata["bands"])

    @property
    def has_distance(self) -> bool:
        return "distance" in self.outputs

    def forward_windows(self, a: torch.Tensor, b: torch.Tensor) -> Prediction:
        """The graph on a batch of window pairs ``(N, C, h, w)`` (sizes multiples of the stride), float32 out.

        A fixed-size graph (a plain ViT's) gets smaller windows padded to its size, and the outputs cut back.
        """
        h, w = a.shape[-2:]
        pad = (0, self.fixed_size - w, 0, self.fixed_size - h) if self.fixed_size is not None else (0, 0, 0, 0)
        if any(pad):  # smaller than a fixed-size graph's window (a small image): edge-replicated, as stride padding is
            a, b = F.pad(a.float(), pad, mode="replicate"), F.pad(b.float(), pad, mode="replicate")
        xa = np.ascontiguousarray(a.detach().cpu().numpy(), dtype=np.float32)
        xb = np.ascontiguousarray(b.detach().cpu().numpy(), dtype=np.float32)
        feed = {"a": xa, "b": xb} if self.form == "pair" else {"image": np.concatenate([xa, xb], axis=1)}
        out = {k: torch.from_numpy(v) for k, v in zip(self.outputs, self.session.run(self.outputs, feed))}
        logits, distance = out["logits"], out.get("distance")
        if any(pad):
            logits = logits[..., :h, :w]
            if distance is not None:
                scale = self.fixed_size // distance.shape[-1]
                distance = distance[..., : h // scale, : w // scale]
        return {"logits": logits, "distance": distance}
