"""The resumable training state, stored in the toolkit's one safe checkpoint format.

A resume checkpoint holds the model, the optimiser and the loss-scaler state plus the loop's
counters. Tensors go into safetensors and everything else into JSON metadata, so resuming never
unpickles anything. The write is atomic, so a kill mid-write keeps the previous good file.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from densechange.checkpoints.format import CheckpointError, load_file, save_file

KIND = "train-state"


@dataclass
class LoopState:
    """Where the loop stands: counts of optimiser steps, epochs and steps inside the epoch."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _json_safe(value: Any) -> Any:
    """Non-finite floats (a NaN metric, say) become strings so the metadata stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def save_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loop: LoopState,
    config: dict[str, Any],
) -> None:
    """Atomically write everything needed to continue the run exactly."""
    tensors = {f"model.{k}": v.detach() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _optimizer_to_flat(optimizer)
    tensors.update(opt_tensors)
    meta = {
        "kind": KIND,
        "loop": _json_safe(asdict(loop)),
        "optimizer": opt_meta,
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "config": config,
    }
    save_file(path, tensors, meta)


def load_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> LoopState:
    """Restore a run from :func:`save_state`; the model must have the same architecture."""
    # Load on the CPU: load_state_dict moves parameters and moment buffers to the model's device
    # but keeps optimiser step counters on the CPU, where Adam expects them (no per-step syncs).
    tensors, meta = load_file(path, device="cpu")
    if meta.get("kind") != KIND:
        raise CheckpointError(f"{path} is a '{meta.get('kind')}' checkpoint, not a resume state; point trainer.resume at the run's last.safetensors.")
    missing = [k for k in ("loop", "optimizer") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: resume state metadata lacks {', '.join(missing)}; the file was not written by a run.")
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    result = model.load_state_dict(model_sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"resume state {path} does not fit this model (different config?). "
            f"missing: {result.missing_keys[:8]}, unexpected: {result.unexpected_keys[:8]}"
        )
    opt_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    optimizer.load_state_dict(_optimizer_from_flat(opt_tensors, meta["optimizer"]))
    if meta.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(meta["scaler"])
    try:
        return LoopState(**meta["loop"])
    except TypeError as err:  # a field this version does not know
        raise CheckpointError(f"{path}: resume state loop fields do not fit this version: {err}") from None
