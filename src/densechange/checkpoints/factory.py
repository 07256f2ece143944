"""The single door to an encoder: ``build_encoder("random" | "imagenet" | NAME | PATH | URL)``.

Both training stages get their encoder here, the way ``timm.create_model`` is timm's one door:
the source is parsed, resolved to a local file (downloading registry entries and URLs into the
cache), imported into our key layout, adapted to the requested input bands and loaded strictly.

Example:
    >>> encoder, norm = build_encoder("resnet18_imagenet", in_chans=3)
    >>> save_encoder("enc.safetensors", encoder, mean=norm["mean"], std=norm["std"])
    >>> same = load_encoder("enc.safetensors")
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from densechange.models.encoder import Encoder
from densechange.models.errors import ModelError
from densechange.models.normalisation import band_statistics
from densechange.checkpoints.format import (CheckpointError, extra_metadata, is_densechange_file, load_file,
                                            looks_like_safetensors, save_file)

_RANDOM = ("random", "none")
_URL_RE = re.compile(r"^(https?|file|hf)://", re.IGNORECASE)
_FOREIGN_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
_ARCH_KEYS = ("kind", "backbone", "neck", "in_chans", "feature_channels", "out_strides", "mean", "std", "config")

Norm = dict[str, list[float]]



def save_encoder(
    path: str | os.PathLike,
    encoder: Encoder,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    config: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write ``encoder`` as an ``encoder`` checkpoint that `load_encoder` rebuilds on its own.

    Args:
        mean, std: per-band normalisation of the input (images scaled to [0, 1]), one per band.
        config: the fully resolved run config, kept for provenance.
        extra: further JSON metadata (epoch, probe scores, ...); may not shadow the fields above.
    """
    try:
        mean, std = band_statistics(encoder.in_chans, mean, std)
    except ModelError as err:  # a file whose statistics do not fit its encoder would be unusable
        raise CheckpointError(f"cannot write {path}: {err}") from None
    extra = extra_metadata(extra, _ARCH_KEYS)
    meta = {"kind": "encoder", **encoder.metadata(), "mean": mean, "std": std, "config": config or {}, **extra}
    save_file(path, encoder.state_dict(), meta)


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu",
                 trust_edited: bool | None = None) -> Encoder:
    """Rebuild the encoder stored at ``path`` from its metadata and load its weights bit-exactly.

    Accepts ``encoder`` checkpoints and ``change-model`` checkpoints (their ``encoder.*`` tensors,
    architecture under ``meta["encoder"]`` or at the top level). ``trust_edited`` accepts a file
    whose metadata was changed after it was written (see :mod:`densechange.checkpoints.format`).
    """
    tensors, meta = load_file(path, trust_edited=trust_edited)
    arch, state = _encoder_part(path, meta, tensors)
    encoder = Encoder.from_metadata(arch)
    load_weights(encoder, state, str(path))
    return encoder.to(device)


def encoder_normalisation(meta: dict[str, Any]) -> Norm | None:
    """``{"mean", "std"}`` recorded in checkpoint metadata, or None when it has none."""
    for scope in (meta, meta.get("encoder") or {}):
        if isinstance(scope, dict) and scope.get("mean") is not None and scope.get("std") is not None:
            return {"mean": [float(v) for v in scope["mean"]], "std": [float(v) for v in scope["std"]]}
    return None


def build_encoder(
    source: str,
    *,
    backbone: str = "resnet18",
    in_chans: int = 3,
    neck_channels: int = 256,
    out_indices: tuple[int, ...] | None = None,
    registry: Sequence[str] | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    backbone_args: dict[str, Any] | None = None,
) -> tuple[Encoder, Norm | None]:
    """Encoder and its input normalisation from any weights source.

    Args:
        source: ``"random"``/``"none"`` (fresh init), ``"imagenet"``, a registry name, a local
            ``.safetensors`` (ours) or ``.pth``/``.pt`` (torchvision, timm, torchgeo, SaDL; layout
            auto-detected), or an ``http(s)://``, ``file://`` or ``hf://org/repo/file`` URL.
        backbone, neck_channels, out_indices: architecture for sources that do not record one
            (random init, ImageNet, foreign files); our checkpoints and registry entries carry
            their own. ``out_indices=None`` feeds the neck the backbone levels at strides 4..32.
        in_chans: input bands of the data; weights made for another count have their first conv
            adapted (repeated and rescaled, or summed for one band) with a warning.
        registry: extra registry files or URLs on top of the shipped one and ``DENSECHANGE_REGISTRY``.
        cache_dir: download cache; default ``DENSECHANGE_CACHE`` or ``~/.cache/densechange``.

    Returns:
        ``(encoder, norm)``: norm is ``{"mean": [...], "std": [...]}`` (one value per band) or
        None when the source defines none (random init).
    """
    if not isinstance(source, str) or not source.strip():
        raise CheckpointError(f"encoder source must be a non-empty string, got {source!r}; {_valid_forms()}")
    source = source.strip()
    if source.lower() in _RANDOM:
        return Encoder(backbone, in_chans=in_chans, neck_channels=neck_channels, out_indices=out_indices,
                       backbone_args=backbone_args), None
    if source.lower() == "imagenet":
        return _from_imagenet(backbone, in_chans, neck_channels, out_indices, registry, cache_dir, backbone_args)
    if _URL_RE.match(source):
        from densechange.checkpoints import download

        path = download.fetch(source, cache_dir=cache_dir)
        return _from_file(path, backbone, in_chans, neck_channels, out_indices, backbone_args=backbone_args)
    path = Path(source).expanduser()
    if path.is_file():
        return _from_file(path, backbone, in_chans, neck_channels, out_indices, backbone_args=backbone_args)
    from densechange.checkpoints import registry as registry_mod

    entry = registry_mod.find_entry(source, extra=registry)
    if entry is not None:
        return _from_entry(entry, in_chans, cache_dir)
    if os.sep in source or "/" in source or path.suffix in (".safetensors", *_FOREIGN_SUFFIXES):
        raise CheckpointError(f"no weights file at {path}; {_valid_forms()}")
    known = ", ".join(e.name for e in registry_mod.load_registry(extra=registry))
    raise CheckpointError(f"unknown encoder source {source!r}; {_valid_forms()}. Registry names: {known}")


def _valid_forms() -> str:
    return (
        "valid sources are 'random' or 'none', 'imagenet', a registry name (`densechange weights "
        "list`), a path to a .safetensors/.pth/.pt file, or an http(s)://, file:// or hf://org/repo/file URL"
    )


def _from_imagenet(backbone, in_chans, neck_channels, out_indices, registry, cache_dir,
                   backbone_args=None) -> tuple[Encoder, Norm | None]:
    from densechange.checkpoints import registry as registry_mod

    entry = registry_mod.find_entry(f"{backbone}_imagenet", extra=registry)
    if entry is not None:
        return _from_entry(entry, in_chans, cache_dir)
    try:
        encoder = Encoder(backbone, in_chans=in_chans, neck_channels=neck_channels, out_indices=out_indices,
                          pretrained=True, backbone_args=backbone_args)
    except OSError as err:  # sockets, HTTP and the hub's errors are OSErrors; anything else is a bug, not the network
        raise CheckpointError(
            f"could not fetch timm's ImageNet weights for {backbone!r} ({type(err).__name__}: {err}). "
            "On an offline machine, download the weights elsewhere and pass the file as the source "
            "(a .pth/.safetensors path), or fill the Hugging Face cache (HF_HUB_CACHE) by hand."
        ) from err
    cfg = encoder.backbone.pretrained_cfg
    weight_chans = cfg.get("input_size", (3,))[0]
    if weight_chans != in_chans:  # timm has already adapted the stem conv the same way we do
        warnings.warn(f"timm ImageNet weights for {backbone!r} expect {weight_chans} input bands, the data has "
                      f"{in_chans}; timm adapted the first conv and the normalisation statistics are adapted "
                      "to match. Set per-band mean/std for your data in the config.", stacklevel=3)
    norm = {"mean": list(cfg.get("mean", ())), "std": list(cfg.get("std", ()))}
    return encoder, _adapt_norm(norm, in_chans) if norm["mean"] else None


def _from_entry(entry, in_chans: int, cache_dir) -> tuple[Encoder, Norm | None]:
    from densechange.checkpoints import download

    path = download.fetch_entry(entry, cache_dir=cache_dir)
    encoder, file_norm = _from_file(
        path, entry.backbone, in_chans, entry.neck_channels, None, importer=entry.importer, label=entry.name
    )
    if entry.mean:
        norm: Norm | None = {"mean": list(entry.mean), "std": list(entry.std)}
    elif file_norm is not None:
        warnings.warn(f"registry entry {entry.name!r} ({entry.origin}) gives no mean/std; using the convention of its "
                      f"weights' layout: mean {file_norm['mean']}, std {file_norm['std']}. Add mean and std to the "
                      "entry if the weights were trained with other statistics.", stacklevel=3)
        norm = file_norm
    else:
        raise CheckpointError(f"registry entry {entry.name!r} ({entry.origin}) gives no mean/std, and its weights' "
                              "layout has no convention to fall back on (torchgeo weights, for one, each have their "
                              "own); add per-band mean and std to the entry.")
    return encoder, _adapt_norm(norm, in_chans)


def _from_file(
    path: str | os.PathLike,
    backbone: str,
    in_chans: int,
    neck_channels: int,
    out_indices: tuple[int, ...] | None,
    *,
    importer: str | None = None,
    label: str | None = None,
    backbone_args: dict[str, Any] | None = None,
) -> tuple[Encoder, Norm | None]:
    """Encoder from a local file: our format when it is safetensors, else a foreign import.

    One of our checkpoints whose metadata was edited is refused here (a run starts only from files
    as they were written); :func:`load_encoder` takes ``trust_edited`` for a file the user vouches for.
    """
    path = Path(path)
    label = label or str(path)
    if looks_like_safetensors(path) and is_densechange_file(path):
        tensors, meta = load_file(path)
        arch, state = _encoder_part(path, meta, tensors)
        norm = encoder_normalisation(meta)
        encoder = Encoder.from_metadata({**arch, "in_chans": in_chans})
    else:
        encoder, state, norm = _import_foreign(path, backbone, in_chans, neck_channels, out_indices, importer,
                                               backbone_args)
    stem = _first_conv_key(encoder)
    if stem in state and state[stem].ndim == 4 and state[stem].shape[1] != in_chans:
        state = _adapt_first_conv(state, stem, in_chans, label)
    state = resize_position_embeddings(encoder, state, label)
    load_weights(encoder, state, label, allow_missing_neck=not any(k.startswith("neck.") for k in state))
    return encoder, _adapt_norm(norm, in_chans) if norm else None


def _import_foreign(
    path: Path, backbone: str, in_chans: int, neck_channels: int, out_indices: tuple[int, ...] | None,
    importer: str | None, backbone_args: dict[str, Any] | None = None,
) -> tuple[Encoder, dict[str, torch.Tensor], Norm | None]:
    """Encoder sized for a foreign file, the file's tensors in our layout, and its usual normalisation."""
    from densechange.checkpoints import importers

    raw = importers.read_state_dict(path)
    layout = importer or importers.detect_layout(raw)
    encoder = Encoder(backbone, in_chans=in_chans, neck_channels=neck_channels, out_indices=out_indices,
                      backbone_args=backbone_args)
    state = importers.import_state_dict(raw, layout, encoder.backbone.state_dict().keys())
    channels = _neck_channels(state, neck_channels)
    if channels != neck_channels:
        encoder = Encoder(backbone, in_chans=in_chans, neck_channels=channels, out_indices=encoder.out_indices,
                          backbone_args=backbone_args)
    norm = importers.default_normalisation(layout, backbone)
    stem = state.get(_first_conv_key(encoder))
    if norm is not None and (stem is None or stem.ndim != 4 or stem.shape[1] != len(norm["mean"])):
        norm = None
    return encoder, state, norm


def _encoder_part(path, meta: dict, tensors: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    kind = meta.get("kind")
    if kind == "encoder":
        return meta, tensors
    if kind == "change-model":
        arch = meta.get("encoder") if isinstance(meta.get("encoder"), dict) else meta
        state = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
        if not state:
            raise CheckpointError(f"{path}: change-model checkpoint holds no 'encoder.*' tensors")
        return arch, state
    raise CheckpointError(
        f"{path} is a {kind!r} checkpoint; an encoder comes from an 'encoder' or 'change-model' checkpoint"
    )


def _neck_channels(state: dict[str, torch.Tensor], default: int) -> int:
    lateral = state.get("neck.lateral.0.weight")
    return int(lateral.shape[0]) if lateral is not None else default


def _first_conv_key(encoder: Encoder) -> str:
    """The stem conv: the first 4-D backbone weight in registration order (timm builds stems first)."""
    return next(k for k, v in encoder.state_dict().items() if k.startswith("backbone.") and v.ndim == 4)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv weight ``(O, I, kH, kW)`` adapted to ``in_chans`` inputs, as timm does.

    One band sums the input filters (a grey image equals the colour image with equal bands);
    more bands repeat the filters cyclically and scale by ``I / in_chans`` so the expected
    activation magnitude stays the same.
    """
    dtype, w = weight.dtype, weight.float()
    if in_chans == 1:
        out = w.sum(dim=1, keepdim=True)
    else:
        repeat = -(-in_chans // w.shape[1])
        out = w.repeat(1, repeat, 1, 1)[:, :in_chans] * (w.shape[1] / in_chans)
    return out.to(dtype)


def _adapt_first_conv(state: dict, key: str, in_chans: int, label: str) -> dict:
    old = int(state[key].shape[1])
    warnings.warn(
        f"{label}: weights expect {old} input bands, the data has {in_chans}; adapting {key} "
        f"({'summing' if in_chans == 1 else 'repeating and rescaling'} its filters) and the normalisation "
        "statistics. Set per-band mean/std for your data in the config.",
        stacklevel=4,
    )
    return {**state, key: adapt_input_conv(state[key], in_chans)}


def _adapt_norm(norm: Norm, in_chans: int) -> Norm:
    """Normalisation adapted like the first conv: averaged for one band, cycled for more."""
    out = {}
    for key in ("mean", "std"):
        values = [float(v) for v in norm[key]]
        if len(values) == in_chans or not values:
            out[key] = values
        elif in_chans == 1:
            out[key] = [sum(values) / len(values)]
        else:
            out[key] = [values[i % len(values)] for i in range(in_chans)]
    return out


_NEW_LAYERS = ("neck.", "pyramid.")  # what backbone-only weights leave at its fresh initialisation


def resize_position_embeddings(encoder: Encoder, state: dict[str, torch.Tensor], label: str) -> dict[str, torch.Tensor]:
    """A ViT's absolute position embeddings resampled (bicubic) to this model's grid when the file's grid differs.

    Weights pretrained at another image size (224 against 256, say) then load; timm interpolates
    them again on the fly for any input size (``dynamic_img_size``).
    """
    expected = encoder.state_dict()
    inner = getattr(encoder.backbone, "model", None)
    prefix_tokens = 0 if getattr(inner, "no_embed_class", False) else int(getattr(inner, "num_prefix_tokens", 0))
    out = dict(state)
    for key, value in state.items():
        if not key.endswith("pos_embed") or key not in expected or value.shape == expected[key].shape:
            continue
        target = expected[key]
        if value.ndim != 3 or target.ndim != 3 or value.shape[-1] != target.shape[-1]:
            continue  # load_weights reports the mismatch
        from timm.layers import resample_abs_pos_embed

        side = int(round((target.shape[1] - prefix_tokens) ** 0.5))
        old = int(round((value.shape[1] - prefix_tokens) ** 0.5))
        if side * side + prefix_tokens != target.shape[1] or old * old + prefix_tokens != value.shape[1]:
            continue
        out[key] = resample_abs_pos_embed(value.float(), new_size=[side, side], old_size=[old, old],
                                          num_prefix_tokens=prefix_tokens).to(value.dtype)
        warnings.warn(f"{label}: {key} resampled from a {old}x{old} to a {side}x{side} patch grid", stacklevel=3)
    return out


def load_weights(
    encoder: Encoder, state: dict[str, torch.Tensor], label: str, allow_missing_neck: bool = False
) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what does not match and why.

    ``allow_missing_neck`` lets backbone-only weights (ImageNet, torchgeo, a timm ViT) leave the FPN
    (and a ViT's simple pyramid) at its fresh initialisation; a partial neck is still an error.
    """
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in state and not (allow_missing_neck and k.startswith(_NEW_LAYERS))]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"weights in {label} do not fit encoder {encoder.backbone_name!r}"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
                parts.append(f"{title}: {shown}")
        parts.append("check that the backbone name matches the weights")
        raise CheckpointError("; ".join(parts))
    encoder.load_state_dict(state, strict=not allow_missing_neck)


def resolve_normalisation(
    in_chans: int, mean: Sequence[float] | None, std: Sequence[float] | None, from_weights: dict | None
) -> tuple[list[float], list[float]]:
    """Per-band normalisation of an encoder's input: config values win, else the weights' own statistics, else 0.5 / 0.5.

    Both stages call this so that an encoder is always fed the way its weights expect unless the
    user says otherwise.
    """
    m = list(mean) if mean is not None else (from_weights or {}).get("mean") or [0.5] * in_chans
    s = list(std) if std is not None else (from_weights or {}).get("std") or [0.5] * in_chans
    return band_statistics(in_chans, m, s)


def build_normalised_encoder(
    source: str,
    *,
    in_chans: int,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    backbone: str = "resnet18",
    neck_channels: int = 256,
    registry: Sequence[str] | None = None,
    backbone_args: dict[str, Any] | None = None,
) -> tuple[Encoder, list[float], list[float]]:
    """:func:`build_encoder` plus :func:`resolve_normalisation`: the encoder and the statistics to feed it.

    Both stages, the probe and the pseudo-masks get their encoder and its input normalisation through
    this one function, so the rule (the config's values, else the weights' own, else 0.5) holds everywhere.
    """
    encoder, stats = build_encoder(source, backbone=backbone, in_chans=in_chans, neck_channels=neck_channels,
                                   registry=list(registry) if registry else None,
                                   backbone_args=dict(backbone_args) if backbone_args else None)
    m, s = resolve_normalisation(in_chans, mean, std, stats)
    return encoder, m, s
