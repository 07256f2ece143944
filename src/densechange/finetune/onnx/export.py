"""Export a finetuned change model to ONNX, verified against PyTorch before the file appears.

The command is :mod:`densechange.finetune.export` (``densechange export``); this is its logic.

    densechange export checkpoint=RUN/best.safetensors out=model.onnx                 # (a, b) -> logits, distance
    densechange export checkpoint=RUN/best.safetensors out=model.onnx form=stacked    # one 2C-band input
    densechange export checkpoint=RUN/best.safetensors out=change_qgis.onnx form=deepness

The graph takes pixels in the checkpoint's units (integer rasters / their dtype's maximum, so
uint8 / 255) and normalises inside (:mod:`densechange.finetune.onnx.graph`). Its metadata carries the bands,
window, overlap, margin, stride, class names, toolkit version, the source checkpoint's sha256 and
its whole metadata (:mod:`densechange.finetune.onnx.metadata`). ``form=deepness`` writes the stacked form at a fixed
tile (the window size) with softmax probabilities out, plus the keys the QGIS Deepness plugin
reads, checked against that plugin's loader. A plain ViT exports every form at the window size
(see :mod:`densechange.finetune.onnx.graph`); its metadata says so (``fixed_size``), and the ONNX
Runtime predictor pads smaller inputs to it.

Every export is verified before the file appears: ONNX Runtime and PyTorch must give the same
outputs within 1e-4 on random inputs of two sizes (two batch sizes at the fixed tile of the
Deepness form). The file is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densechange.checkpoints import CheckpointError
from densechange.checkpoints.download import sha256_file
from densechange.checkpoints.version import code_version
from densechange.atomic import write_atomically
from densechange.redact import redact_tree
from densechange.engine.errors import ConfigError

from densechange.finetune.checkpoint import load_change_model
from densechange.finetune.deepcl.model import ChangeModel
from densechange.finetune.onnx.graph import export_graph, fixed_size, graph_for, input_names, output_names, sample_inputs
from densechange.finetune.onnx.metadata import INPUT_SCALE, check_deepness, class_names, deepness_entries, set_metadata, training_resolution_cm
from densechange.finetune.onnx.runtime import open_session, require
from densechange.finetune.inference.windows import DEFAULT_WINDOWS, WindowSettings

TOLERANCE = 1e-4


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the file, its form, the largest ORT-vs-PyTorch difference and notes for the user."""

    path: Path
    form: str
    max_difference: float
    notes: tuple[str, ...] = ()


def window_settings(meta: dict[str, Any], window: int | None, overlap: int | None, margin: int | None) -> tuple[int, int, int]:
    """Window, overlap and margin: those given, else the run's validation windows, else :data:`DEFAULT_WINDOWS`."""
    val = ((meta.get("config") or {}).get("val") or {}).get("window") or {}
    return (int(window if window is not None else val.get("size", DEFAULT_WINDOWS.size)),
            int(overlap if overlap is not None else val.get("overlap", DEFAULT_WINDOWS.overlap)),
            int(margin if margin is not None else val.get("margin", DEFAULT_WINDOWS.margin)))


def verify(model: ChangeModel, form: str, data: bytes, sizes: list[tuple[int, int, int]]) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch outputs over ``(batch, height, width)`` inputs."""
    session = open_session(data, "cpu")
    graph, names = graph_for(model, form), input_names(form)
    worst, g = 0.0, torch.Generator().manual_seed(0)
    for batch, height, width in sizes:
        inputs = sample_inputs(model, form, batch, height, width, generator=g)
        with torch.no_grad():
            expected = graph(*inputs)
        got = session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})
        for e, o in zip(expected, got):
            if tuple(e.shape) != o.shape:
                raise RuntimeError(f"ONNX output shape {o.shape} differs from PyTorch's {tuple(e.shape)} at {height}x{width}")
            worst = max(worst, float(np.abs(e.numpy() - o).max()))
    return worst


def verification_sizes(form: str, window: int, stride: int, fixed: bool = False) -> list[tuple[int, int, int]]:
    """Two input sizes (batch, height, width): the window, then a batch of two of another, non-square size
    (a batch of two windows when the graph takes one fixed size)."""
    if fixed or form == "deepness":
        return [(1, window, window), (2, window, window)]
    other = window - stride if window > stride else 2 * window
    return [(1, window, window), (2, other, window + stride)]


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, form: str = "pair",
                      window: int | None = None, overlap: int | None = None, margin: int | None = None,
                      resolution_cm: float | None = None, check_sizes: list[tuple[int, int, int]] | None = None
                      ) -> Exported:
    """Export a ``change-model`` checkpoint to ``out`` as an ONNX file in ``form``, verified against PyTorch.

    Args:
        form: ``pair``, ``stacked`` or ``deepness``.
        window, overlap, margin: recorded window settings (default: the run's validation windows);
            the Deepness form's fixed tile is ``window``.
        resolution_cm: ground resolution for the Deepness keys (default: read from the training data).
        check_sizes: ``(batch, height, width)`` inputs of the verification (default: see :func:`verification_sizes`).
    """
    require("onnx", "exporting to ONNX")
    require("onnxruntime", "verifying an ONNX export")
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"out={out}: name the exported model .onnx.")
    if checkpoint.suffix.lower() == ".onnx":
        raise ConfigError(f"checkpoint={checkpoint} is already an ONNX file; export from the run's .safetensors file.")
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: file not found.")
    model, meta = load_change_model(checkpoint)
    window, overlap, margin = window_settings(meta, window, overlap, margin)
    WindowSettings(window, overlap, margin).check(model.stride)
    fixed = fixed_size(model, form)
    if fixed:
        model.encoder.check_input_size(window, window, f"the window ({window} px)")
    proto = export_graph(model, form, size=window if fixed else None)
    proto.producer_name, proto.producer_version = "densechange", code_version()
    entries: dict[str, Any] = {
        "toolkit": "densechange",
        "toolkit_version": code_version(),
        "input_form": form,
        "inputs": input_names(form),
        "outputs": output_names(form, model.metric_head is not None),
        "bands": model.in_chans,
        "input_bands": model.in_chans * (1 if form == "pair" else 2),
        "input_scale": INPUT_SCALE,
        **model.normalisation(),
        "window": window,
        "overlap": overlap,
        "margin": margin,
        "stride": model.stride,
        "class_names": class_names(model.num_classes),
        **({"fixed_size": window} if fixed else {}),
        "source_checkpoint": checkpoint.name,
        "source_sha256": sha256_file(checkpoint),
        "checkpoint_metadata": redact_tree(meta),  # files written before configs were recorded without secrets
    }
    notes: list[str] = []
    if form == "deepness":
        if resolution_cm is None:
            resolution_cm, note = training_resolution_cm(meta.get("config") or {})
            notes.append(note)
        entries.update(deepness_entries(model.num_classes, window, overlap, resolution_cm))
    set_metadata(proto, entries)
    if form == "deepness":
        check_deepness(proto)
    data = proto.SerializeToString()
    worst = verify(model, form, data, check_sizes or verification_sizes(form, window, model.stride, fixed))
    if not worst <= TOLERANCE:
        raise RuntimeError(f"the ONNX graph differs from the PyTorch model by {worst:.3g} (> {TOLERANCE}); "
                           f"{out} was not written.")
    write_atomically(out, lambda tmp: tmp.write_bytes(data))
    return Exported(out, form, worst, tuple(notes))
