"""``densechange weights convert``: foreign weights written once as an encoder checkpoint of ours.

Converting once (instead of importing at every start) gives a file that records where the weights
came from (layout, file name, sha256) and how inputs are normalised, and that loads without timm's
or torchvision's key maps.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from densechange.checkpoints.download import sha256_file
from densechange.models.encoder import Encoder
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.factory import load_weights, save_encoder
from densechange.checkpoints.importers import default_normalisation, detect_layout, import_state_dict, read_state_dict

__all__ = ["convert"]


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    from_: str | None = None,
    backbone: str = "resnet18",
    neck_channels: int = 256,
    out_indices: tuple[int, ...] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
) -> Path:
    """Write foreign weights ``src`` as an ``encoder`` checkpoint ``dst`` in our format.

    The encoder keeps the file's input bands. A source without neck weights gets a freshly
    initialised FPN (seeded, recorded in the metadata as ``import.neck = "initialised"``).
    """
    raw = read_state_dict(src)
    layout = from_ or detect_layout(raw)
    stem_chans = next((int(v.shape[1]) for k, v in raw.items() if v.ndim == 4), 3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = Encoder(backbone, in_chans=stem_chans, neck_channels=neck_channels, out_indices=out_indices)
    state = import_state_dict(raw, layout, encoder.backbone.state_dict().keys())
    has_neck = any(k.startswith("neck.") for k in state)
    load_weights(encoder, state, str(src), allow_missing_neck=not has_neck)
    if mean is None or std is None:
        norm = default_normalisation(layout, backbone)
        if norm is None or len(norm["mean"]) != encoder.in_chans:
            raise CheckpointError(
                f"{src}: the {layout} layout does not say how inputs were normalised; pass mean and std "
                f"(mean=[...] std=[...]), one value per band ({encoder.in_chans})"
            )
        mean, std = mean or norm["mean"], std or norm["std"]
    digest = sha256_file(src)
    extra = {"import": {"from": layout, "file": Path(src).name, "sha256": digest,
                        "neck": "imported" if has_neck else "initialised"}}
    save_encoder(dst, encoder, mean=mean, std=std, extra=extra)
    return Path(dst)
