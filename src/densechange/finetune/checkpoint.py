"""Change-model checkpoints: one file that rebuilds the detector from its metadata alone.

Tensors are the model's state dict (``encoder.*``, ``metric_head.*``, ``decoder.*``,
``classifier.*``); the metadata holds the encoder architecture and normalisation (so that
:func:`densechange.checkpoints.load_encoder` can take the finetuned encoder out of it), the detector's
architecture, and the resolved run config. Files go through :func:`densechange.checkpoints.save_file`, so
they are atomic safetensors and loading never unpickles.

Example:
    >>> save_change_model("best.safetensors", model, config=cfg_dict, extra={"epoch": 3})
    >>> model, meta = load_change_model("best.safetensors")
"""
from __future__ import annotations

import os
from typing import Any

import torch

from densechange.checkpoints import CheckpointError, load_file, save_file
from densechange.checkpoints.format import extra_metadata

from densechange.engine.errors import ConfigError
from densechange.models import Encoder, ModelError

from densechange.finetune.deepcl.model import ChangeModel

KIND = "change-model"
_RESERVED = ("kind", "encoder", "mean", "std", "model", "config")


def change_model_metadata(model: ChangeModel, config: dict | None = None, extra: dict | None = None) -> dict[str, Any]:
    """The JSON metadata of a change-model file."""
    extra = extra_metadata(extra, _RESERVED)
    norm = model.normalisation()
    return {
        "kind": KIND,
        "encoder": {**model.encoder.metadata(), **norm},
        **norm,
        "model": model.arch(),
        "config": config or {},
        **extra,
    }


def save_change_model(
    path: str | os.PathLike, model: ChangeModel, *, config: dict | None = None, extra: dict | None = None
) -> None:
    """Atomically write ``model`` as a ``change-model`` checkpoint."""
    save_file(path, model.state_dict(), change_model_metadata(model, config, extra))


def model_from_metadata(meta: dict[str, Any]) -> ChangeModel:
    """A freshly initialised detector with the architecture recorded in ``meta``."""
    if meta.get("kind") != KIND:
        raise CheckpointError(f"checkpoint is a '{meta.get('kind')}' file, not a change model; pass the best.safetensors "
                              "of a finetuning run (an encoder file is a starting point for `densechange finetune`).")
    for key in ("encoder", "model", "mean", "std"):
        if key not in meta:
            raise CheckpointError(f"change-model metadata lacks '{key}'; the file was not written by finetune.")
    return ChangeModel.from_arch(Encoder.from_metadata(meta["encoder"]), meta["model"], mean=meta["mean"], std=meta["std"])


def load_change_model(path: str | os.PathLike, device: str | torch.device = "cpu",
                      trust_edited: bool | None = None) -> tuple[ChangeModel, dict[str, Any]]:
    """Rebuild the detector stored at ``path`` and load its weights bit-exactly; returns ``(model, meta)``.

    ``trust_edited`` accepts a file whose metadata was changed after it was written (with a warning).
    """
    tensors, meta = load_file(path, trust_edited=trust_edited)
    try:
        model = model_from_metadata(meta)
    except (CheckpointError, ModelError, ConfigError) as err:  # the file records what this version cannot build
        raise CheckpointError(f"{path}: {err}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path}: tensors do not fit the recorded architecture (missing {missing[:6]}, "
                              f"unexpected {unexpected[:6]}, shape mismatch {wrong[:6]}); the file is damaged or was edited.")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), meta
