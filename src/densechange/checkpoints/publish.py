"""Publishing an encoder: the registry entry that lets others download it by name.

``densechange weights entry FILE url=URL`` prints the entry for a checkpoint that will be
served at ``URL``: its hash and size are measured on the file, its architecture, bands and
normalisation read from its metadata, and the result is validated exactly as a registry file's
entries are (:func:`densechange.checkpoints.entry.parse_entry`), so it can be pasted into a
registry file as it is.

Example:
    >>> entry = registry_entry("runs/sadl/encoder.safetensors", "https://example.org/w/sadl_r18.safetensors")
    >>> json.dumps({"version": 1, "entries": [entry]}, indent=2)
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from densechange.checkpoints.card import SADL_PAPER, dataset_name
from densechange.checkpoints.download import sha256_file
from densechange.checkpoints.entry import parse_entry
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.format import read_metadata

_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def default_name(meta: dict[str, Any]) -> str:
    """``<backbone>_<method>_<data>``, e.g. ``resnet18_sadl_inria``: what the weights are, in a cache-safe name."""
    parts = [str(meta.get("backbone", "encoder")), str(meta.get("method", "")), dataset_name(meta)]
    return _BAD_NAME_CHARS.sub("-", "_".join(p for p in parts if p and p != "unknown")).strip("-_.") or "encoder"


def registry_entry(path: str | os.PathLike, url: str, name: str | None = None, licence: str = "",
                   trust_edited: bool | None = None) -> dict[str, Any]:
    """The registry entry (a JSON-ready dict) for the densechange encoder checkpoint at ``path`` served at ``url``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    meta = read_metadata(path, trust_edited=trust_edited)
    if meta.get("kind") != "encoder":
        raise CheckpointError(f"{path} is a {meta.get('kind', 'unknown')!r} checkpoint; registry entries name encoder "
                              "checkpoints (a pretraining run's encoder.safetensors)")
    missing = [k for k in ("backbone", "in_chans", "mean", "std") if meta.get(k) is None]
    if missing:
        raise CheckpointError(f"{path}: its metadata lacks {', '.join(missing)}, which a registry entry needs")
    bands = ((meta.get("config") or {}).get("data") or {}).get("bands") or []
    steps = meta.get("steps")
    method = meta.get("method", "")
    entry: dict[str, Any] = {
        "name": name or default_name(meta),
        "url": url,
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "backbone": meta["backbone"],
        "in_chans": int(meta["in_chans"]),
        "mean": [float(v) for v in meta["mean"]],
        "std": [float(v) for v in meta["std"]],
        "neck_channels": int((meta.get("neck") or {}).get("channels", 256)),
        "importer": "densechange",
        "description": (f"{meta['backbone']} + FPN encoder pretrained with {method or 'densechange'} on "
                        f"{dataset_name(meta)}" + (f", {steps} steps" if steps is not None else "")),
        "source": f"densechange {meta.get('code_version', 'unknown')}",
        "normalisation": "per-band mean/std of the pretraining run, on pixels scaled to [0, 1]",
    }
    if method == "sadl":
        entry["paper"] = SADL_PAPER
    if bands and len(bands) == entry["in_chans"]:
        entry["bands"] = [str(b) for b in bands]
    if licence:
        entry["licence"] = licence
    parse_entry(entry, f"the entry for {path}")  # the same checks as a registry file's entries
    return entry
