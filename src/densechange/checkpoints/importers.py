"""Importers: pure key maps from foreign weight files into the Encoder's ``backbone.*``/``neck.*`` layout.

Each importer takes a plain state dict and returns one in our layout, like timm's
``checkpoint_filter_fn``; the strict load that follows (`checkpoints.factory`) reports every key
that still does not fit. Foreign files are opened with ``torch.load(weights_only=True)`` (or
safetensors for plain ``.safetensors`` files such as timm's hub weights), so no code inside them runs.

Layouts:
    torchvision  ``conv1``, ``bn1``, ``layer1..4``, ``fc`` (torchvision and timm ResNets share it).
    torchgeo     torchgeo's ResNet ``.pth`` files: timm ResNet state dicts, with or without ``fc``.
    timm         any timm model, full (``stages.0``, ``head``) or ``features_only`` (``stages_0``).
    sadl         the SaDL reference (justchenhao/SaDL_CD): its ``Backbone`` module, exported as
                 ``resnet.*`` (torchvision ResNet) and ``neck.*`` (``models/FPN.py`` FPNDecoder:
                 ``p5`` is the C5 lateral conv, ``p{4,3,2}.skip_conv`` the C4..C2 laterals), or a
                 training checkpoint whose ``model_state_dict`` holds it as ``online_encoder.net.*``.
    densechange  our own layout saved by ``torch.save`` (``backbone.*``, ``neck.*``).

Example:
    >>> state = import_file("resnet18-f37072fd.pth")            # layout detected: torchvision
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable, Collection

import torch

from densechange.checkpoints.format import CheckpointError, looks_like_safetensors

StateDict = dict[str, torch.Tensor]

_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "model_G_state_dict", "net", "module")
_HEAD_MODULES = ("fc", "head", "classifier")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Tensors of a foreign ``.pth``/``.pt`` (or plain ``.safetensors``) file, unwrapped from
    training-checkpoint containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    if looks_like_safetensors(path):  # e.g. timm weights from the Hugging Face hub
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return unwrap_state_dict(load_file(str(path)), str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {err}") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"{path} cannot be read as a weights-only PyTorch file ({type(err).__name__}: {err}). It is "
            "truncated or corrupt, or it pickles code objects; re-save its state_dict() with torch.save."
        ) from err
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj: object, label: str = "state dict") -> StateDict:
    """The tensor dict inside ``obj``: descends into ``state_dict``/``model``/... containers and
    strips the ``module.`` prefix that DataParallel/DDP add."""
    while isinstance(obj, dict) and not (obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if not tensors:
                raise CheckpointError(f"{label}: no state dict found; top-level keys are {sorted(map(str, obj))[:20]}")
            obj = tensors
            break
        obj = inner
    if not isinstance(obj, dict):
        raise CheckpointError(f"{label}: expected a dict of tensors, got {type(obj).__name__}")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _sadl_prefix(state: StateDict) -> str | None:
    """The prefix before ``resnet.conv1.weight`` ('' for an export, 'online_encoder.net.' in training)."""
    for key in state:
        if key.endswith("resnet.conv1.weight"):
            return key[: -len("resnet.conv1.weight")]
    return None


def detect_layout(state: StateDict) -> str:
    """Name of the importer whose layout ``state`` has (see the module docstring)."""
    keys = set(state)
    if any(k.startswith("backbone.") for k in keys) and any(k.startswith("neck.lateral.") for k in keys):
        return "densechange"
    if _sadl_prefix(state) is not None:
        return "sadl"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    return "timm"


def _prefixed(state: StateDict, prefix: str = "backbone.") -> StateDict:
    return {prefix + k: v for k, v in state.items()}


def from_torchvision(state: StateDict) -> StateDict:
    """torchvision (or timm) ResNet: keep every key under ``backbone.``, drop the ``fc`` classifier."""
    if "conv1.weight" not in state:
        raise CheckpointError(f"not a torchvision ResNet state dict: no 'conv1.weight' among {sorted(state)[:8]}")
    return _prefixed({k: v for k, v in state.items() if not k.startswith("fc.")})


def from_torchgeo(state: StateDict) -> StateDict:
    """torchgeo ResNet weights: timm ResNet state dicts (torchvision key names), ``fc`` optional."""
    return from_torchvision(state)


def from_timm(state: StateDict, backbone_keys: Collection[str] | None = None) -> StateDict:
    """Any timm model, full or ``features_only``.

    timm's feature wrapper flattens the first level of sequential containers (``stages.0`` becomes
    ``stages_0``) and leaves out modules it does not run (classifier, final conv head, stages past
    the last requested level). Given the target backbone's keys, full-model keys are renamed the
    same way and keys of modules absent from the target are dropped; without them, only the
    classifier (``fc``/``head``/``classifier``) is dropped.
    """
    if backbone_keys is None:
        return _prefixed({k: v for k, v in state.items() if k.split(".")[0] not in _HEAD_MODULES})
    targets = {k[len("backbone."):] if k.startswith("backbone.") else k for k in backbone_keys}
    if targets and all(k.startswith("model.") for k in targets) and not any(k.startswith("model.") for k in state):
        # timm's getter wrapper (plain ViTs) holds the whole model as ``model``; what it prunes (final norm, head) goes
        wrapped = {k.split(".")[1] for k in targets}
        return _prefixed({f"model.{k}": v for k, v in state.items() if k.split(".")[0] in wrapped})
    modules = {k.split(".")[0] for k in targets}
    out: StateDict = {}
    for key, value in state.items():
        parts = key.split(".")
        flat = f"{parts[0]}_{parts[1]}." + ".".join(parts[2:]) if len(parts) > 2 else None
        if key in targets:
            out[key] = value
        elif flat in targets:
            out[flat] = value
        elif parts[0] in modules or (len(parts) > 1 and f"{parts[0]}_{parts[1]}" in modules):
            out[key] = value  # belongs to a module the backbone has: the strict load reports it
    return _prefixed(out)


def from_sadl(state: StateDict) -> StateDict:
    """SaDL reference ``Backbone``: ``resnet.*`` -> ``backbone.*``, FPN ``p5``/``p{4,3,2}.skip_conv``
    -> ``neck.lateral.{3,2,1,0}``; projector, predictor and ``conv_pred`` heads are dropped."""
    prefix = _sadl_prefix(state)
    if prefix is None:
        raise CheckpointError("not a SaDL reference state dict: no 'resnet.conv1.weight' key")
    lateral = {"neck.p5.": "neck.lateral.3.", "neck.p4.skip_conv.": "neck.lateral.2.",
               "neck.p3.skip_conv.": "neck.lateral.1.", "neck.p2.skip_conv.": "neck.lateral.0."}
    out: StateDict = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix):]
        if key.startswith("resnet.") and not key.startswith("resnet.fc."):
            out["backbone." + key[len("resnet."):]] = value
        elif key.startswith("neck."):
            src = next((s for s in lateral if key.startswith(s)), None)
            out[lateral[src] + key[len(src):] if src else key] = value
    return out


def from_densechange(state: StateDict) -> StateDict:
    """Our own layout saved with ``torch.save``: ``backbone.*`` and ``neck.*`` kept as they are."""
    return {k: v for k, v in state.items() if k.startswith(("backbone.", "neck."))}


IMPORTERS: dict[str, Callable[..., StateDict]] = {
    "sadl": from_sadl,
    "torchvision": from_torchvision,
    "timm": from_timm,
    "torchgeo": from_torchgeo,
    "densechange": from_densechange,
}


def import_state_dict(
    state: StateDict, from_: str | None = None, backbone_keys: Collection[str] | None = None
) -> StateDict:
    """``state`` mapped into our layout by importer ``from_`` (detected from the keys when None)."""
    layout = from_ or detect_layout(state)
    if layout not in IMPORTERS:
        raise CheckpointError(f"unknown importer {layout!r}; choose one of {sorted(IMPORTERS)}")
    if layout == "timm":
        return from_timm(state, backbone_keys)
    return IMPORTERS[layout](state)


def import_file(
    path: str | os.PathLike, from_: str | None = None, backbone_keys: Collection[str] | None = None
) -> StateDict:
    """`read_state_dict` followed by `import_state_dict`."""
    return import_state_dict(read_state_dict(path), from_, backbone_keys)


def default_normalisation(layout: str, backbone: str) -> dict[str, list[float]] | None:
    """What the source's own models expect: ImageNet for torchvision, 0.5/0.5 for SaDL, timm's
    pretrained config for timm; None where the file alone does not say (torchgeo)."""
    if layout == "torchvision":
        return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    if layout == "sadl":
        return {"mean": [0.5] * 3, "std": [0.5] * 3}
    if layout == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(backbone)
        if cfg is not None:
            return {"mean": list(cfg.mean), "std": list(cfg.std)}
    return None

