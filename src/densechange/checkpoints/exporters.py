"""Exporters: an encoder's weights in the naming of the libraries users already train with.

The inverse of :mod:`densechange.checkpoints.importers`. Each target is a key map plus the
target library's own model, which every export is loaded into (``strict=True``) and compared
with on random input before the file is written, so a file that does not reproduce this
toolkit's features is never produced.

Targets:
    timm         the full timm model's names (``stages.0`` rather than the feature wrapper's
                 ``stages_0``), as safetensors; load with ``timm.create_model(name, num_classes=0,
                 pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``. No place for the neck.
    torchvision  torchvision ResNet names (``conv1``, ``layer1``..``layer4``), as a ``.pth`` state
                 dict; ResNet-family backbones only. No place for the neck.
    torchgeo     TorchGeo's models are timm models: timm names, as ``.pth``, for the backbones
                 ``torchgeo.models`` builds. No place for the neck.
    smp          segmentation_models_pytorch's ``FPN``: the encoder under ``encoder.`` and the FPN
                 laterals as ``decoder.p5`` and ``decoder.p{4,3,2}.skip_conv``, which compute the
                 same top-down pyramid (1x1 laterals, nearest upsampling, addition) as this
                 toolkit's neck.

Example:
    >>> done = export_encoder(load_encoder("runs/sadl/encoder.safetensors"), "encoder_tv.pth", "torchvision")
    >>> done.max_difference < 1e-5
    True
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from densechange.atomic import write_atomically
from densechange.models.encoder import Encoder
from densechange.checkpoints.errors import CheckpointError

StateDict = dict[str, torch.Tensor]
TOLERANCE = 1e-5
TARGETS = ("timm", "torchvision", "torchgeo", "smp")
_RESNETS = re.compile(r"^(resnet(18|34|50|101|152)|resnext50_32x4d|resnext101_32x8d|resnext101_64x4d|"
                      r"wide_resnet50_2|wide_resnet101_2)$")
_FLAT = re.compile(r"^([A-Za-z]\w*?)_(\d+)\.(.*)$")


@dataclass(frozen=True)
class ExportedEncoder:
    """What an export wrote: the file, its target, the largest feature difference and notes for the user."""

    path: Path
    target: str
    max_difference: float
    notes: tuple[str, ...] = ()


@dataclass
class _Plan:
    """A target's state dict, its own model with that dict loaded, and how to read features from it."""

    state: StateDict
    model: nn.Module
    features: Callable[[torch.Tensor], list[torch.Tensor]]
    notes: list[str]


def _require(module: str, target: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise CheckpointError(
            f"exporting to {target} verifies the file with {module} itself, which is not installed: "
            f"pip install 'densechange[interop]' (or pip install {module.replace('_', '-')})") from err


def _backbone_state(encoder: Encoder) -> StateDict:
    return {k[len("backbone."):]: v.detach().clone() for k, v in encoder.state_dict().items() if k.startswith("backbone.")}


def full_model_names(state: StateDict, full_keys: set[str]) -> StateDict:
    """timm feature-wrapper names (``stages_0.x``) renamed to the full model's (``stages.0.x``)."""
    out = {}
    for key, value in state.items():
        if key.startswith("model.") and key[len("model."):] in full_keys:  # timm's getter wrapper (plain ViTs)
            key = key[len("model."):]
        m = _FLAT.match(key)
        unflat = f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else None
        out[unflat if key not in full_keys and unflat in full_keys else key] = value
    return out


def _load_strict(model: nn.Module, state: StateDict, target: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"the {target} model does not take this encoder's weights: {err}") from err


def _timm_plan(encoder: Encoder, target: str = "timm") -> _Plan:
    import timm

    model = timm.create_model(encoder.backbone_name, pretrained=False, num_classes=0, in_chans=encoder.in_chans)
    full_keys = set(model.state_dict())
    state = full_model_names(_backbone_state(encoder), full_keys)
    notes = ["the FPN neck is left out: a timm backbone has no place for it"]
    rest = sorted(full_keys - set(state))
    if rest:  # modules after the last pyramid level (a final norm or conv head): not part of the encoder
        notes.append(f"{len(rest)} tensors of the full model after the last pyramid level are not part of the encoder "
                     f"and keep their initial values when loaded non-strictly: {', '.join(rest[:6])}"
                     + (" ..." if len(rest) > 6 else ""))
        features_model = timm.create_model(encoder.backbone_name, pretrained=False, features_only=True,
                                           out_indices=encoder.out_indices, in_chans=encoder.in_chans)
        _load_strict(features_model, _backbone_state(encoder), f"{target} (features_only)")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) != set(rest):
            raise CheckpointError(f"the {target} model does not take this encoder's weights: missing {missing}, "
                                  f"unexpected {unexpected}")
        return _Plan(state, features_model, lambda x: list(features_model(x)), notes)
    _load_strict(model, state, target)
    features_model = timm.create_model(encoder.backbone_name, pretrained=False, features_only=True,
                                       out_indices=encoder.out_indices, in_chans=encoder.in_chans)
    _load_strict(features_model, _backbone_state(encoder), target)
    # The full model itself is what a user loads; read its features through timm's own extraction.
    return _Plan(state, model, lambda x: model.forward_intermediates(x, indices=list(encoder.out_indices),
                                                                       intermediates_only=True), notes)


def _resnet_stages(model: nn.Module, indices: tuple[int, ...]) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """torchvision-style ResNet levels: 0 the stem (stride 2), 1..4 ``layer1``..``layer4``."""
    def run(x: torch.Tensor) -> list[torch.Tensor]:
        x = model.relu(model.bn1(model.conv1(x)))
        levels = [x]
        x = model.maxpool(x)
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = layer(x)
            levels.append(x)
        return [levels[i] for i in indices]
    return run


def _check_resnet(encoder: Encoder, target: str) -> None:
    if not _RESNETS.match(encoder.backbone_name):
        raise CheckpointError(f"backbone {encoder.backbone_name!r} has no {target} counterpart with the same weights "
                              f"layout ({target} takes ResNet-family backbones here); export to timm instead")


def _torchvision_plan(encoder: Encoder) -> _Plan:
    _check_resnet(encoder, "torchvision")
    models = _require("torchvision.models", "torchvision")
    model = getattr(models, encoder.backbone_name)(weights=None)
    model.fc = nn.Identity()  # the encoder has no classifier; users put their own head here
    if encoder.in_chans != 3:
        model.conv1 = nn.Conv2d(encoder.in_chans, model.conv1.out_channels, 7, 2, 3, bias=False)
    state = _backbone_state(encoder)
    _load_strict(model, state, "torchvision")
    notes = ["the FPN neck is left out: a torchvision ResNet has no place for it",
             "torchvision's model loads it with its `fc` replaced by torch.nn.Identity()"]
    if encoder.in_chans != 3:
        notes.append(f"conv1 takes {encoder.in_chans} bands: replace the model's conv1 with "
                     f"nn.Conv2d({encoder.in_chans}, 64, 7, 2, 3, bias=False) before loading")
    return _Plan(state, model, _resnet_stages(model, encoder.out_indices), notes)


def _torchgeo_plan(encoder: Encoder) -> _Plan:
    models = _require("torchgeo.models", "torchgeo")
    build = getattr(models, encoder.backbone_name, None)
    if build is None or not callable(build):
        raise CheckpointError(f"backbone {encoder.backbone_name!r} is not a torchgeo.models builder; export to timm instead")
    model = build(weights=None, in_chans=encoder.in_chans, num_classes=0)
    state = full_model_names(_backbone_state(encoder), set(model.state_dict()))
    _load_strict(model, state, "torchgeo")
    return _Plan(state, model, lambda x: model.forward_intermediates(x, indices=list(encoder.out_indices),
                                                                       intermediates_only=True),
                 ["the FPN neck is left out: a torchgeo backbone has no place for it"])


def smp_encoder_name(backbone: str) -> str:
    """smp's name for a timm backbone: its own ResNet encoders, else timm's through ``tu-``."""
    return backbone if _RESNETS.match(backbone) else f"tu-{backbone}"


def _smp_plan(encoder: Encoder) -> _Plan:
    smp = _require("segmentation_models_pytorch", "smp")
    if list(encoder.out_strides) != [4, 8, 16, 32]:
        raise CheckpointError(f"smp's FPN reads levels at strides 4..32; this encoder's are {encoder.out_strides}")
    name = smp_encoder_name(encoder.backbone_name)
    try:
        model = smp.FPN(encoder_name=name, encoder_weights=None, in_channels=encoder.in_chans,
                        decoder_pyramid_channels=encoder.out_channels)
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"smp has no encoder {name!r} for backbone {encoder.backbone_name!r}: {err}") from err
    ours = encoder.state_dict()
    target_keys = set(model.encoder.state_dict())
    backbone = _backbone_state(encoder)
    prefix = "" if set(backbone) <= target_keys else "model."
    enc_state = {prefix + k: v for k, v in backbone.items()}
    _load_strict(model.encoder, enc_state, "smp encoder")
    lateral = {"p5": 3, "p4.skip_conv": 2, "p3.skip_conv": 1, "p2.skip_conv": 0}
    dec_state = {}
    for place, level in lateral.items():
        part = {k.split(".")[-1]: ours[f"neck.lateral.{level}.{k.split('.')[-1]}"].detach().clone() for k in ("weight", "bias")}
        module = model.decoder.get_submodule(place)
        _load_strict(module, part, f"smp decoder.{place}")
        dec_state.update({f"decoder.{place}.{k}": v for k, v in part.items()})
    state = {**{f"encoder.{k}": v for k, v in enc_state.items()}, **dec_state}

    def pyramid(x: torch.Tensor) -> list[torch.Tensor]:
        feats = model.encoder(x)  # smp: [input, stride 2, 4, 8, 16, 32]
        c2, c3, c4, c5 = feats[-4:]
        d = model.decoder
        p5 = d.p5(c5)
        p4 = d.p4(p5, c4)
        p3 = d.p3(p4, c3)
        p2 = d.p2(p3, c2)
        return [*feats[-4:], p2, p3, p4, p5]

    notes = ["the FPN neck is in the file as smp.FPN's decoder.p5 and decoder.p{4,3,2}.skip_conv; build the model with "
             f"smp.FPN(encoder_name={name!r}, encoder_weights=None, in_channels={encoder.in_chans}, "
             f"decoder_pyramid_channels={encoder.out_channels}) and load with strict=False (its segmentation "
             "blocks and head are new)"]
    return _Plan(state, model, pyramid, notes)


PLANS: dict[str, Callable[[Encoder], _Plan]] = {
    "timm": _timm_plan, "torchvision": _torchvision_plan, "torchgeo": _torchgeo_plan, "smp": _smp_plan,
}


def _reference(encoder: Encoder, target: str, x: torch.Tensor) -> list[torch.Tensor]:
    """This toolkit's features that the target must reproduce: the backbone levels (and the pyramid for smp)."""
    levels = encoder.forward_features(x)
    return [*levels, *encoder.neck(levels)] if target == "smp" else levels


def verify(encoder: Encoder, plan: _Plan, target: str, size: int = 64, seed: int = 0) -> float:
    """Largest absolute difference between the target's features and ours on seeded random input (fp32)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, encoder.in_chans, size, size, generator=g)
    encoder = encoder.float().eval()
    plan.model.float().eval()
    with torch.no_grad():
        ours, theirs = _reference(encoder, target, x), plan.features(x)
    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
        raise CheckpointError(f"the {target} model's features have shapes {[tuple(t.shape) for t in theirs]}, "
                              f"this encoder's {[tuple(t.shape) for t in ours]}")
    return max(float((a - b).abs().max()) for a, b in zip(ours, theirs))


def _write(path: Path, state: StateDict) -> None:
    """safetensors for a ``.safetensors`` name (timm's hub format), else a ``torch.save`` state dict."""
    state = {k: v.contiguous() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        write_atomically(path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    else:
        write_atomically(path, lambda tmp: torch.save(state, tmp))


def default_suffix(target: str) -> str:
    return ".safetensors" if target == "timm" else ".pth"


def export_encoder(encoder: Encoder, out: str | os.PathLike, target: str) -> ExportedEncoder:
    """Write ``encoder`` for ``target`` at ``out`` after the target's own model reproduced its features.

    Raises:
        CheckpointError: an unknown target, a backbone the target lacks, a missing target library,
            or features that differ by more than :data:`TOLERANCE` (nothing is written then).
    """
    if target not in PLANS:
        raise CheckpointError(f"unknown export target {target!r}; choose one of: {', '.join(TARGETS)}")
    encoder = encoder.cpu().float().eval()
    plan = PLANS[target](encoder)
    worst = verify(encoder, plan, target)
    if not worst <= TOLERANCE:
        raise CheckpointError(f"the {target} model's features differ from this encoder's by {worst:.3g} "
                              f"(> {TOLERANCE}); nothing was written")
    path = Path(out)
    _write(path, plan.state)
    return ExportedEncoder(path, target, worst, tuple(plan.notes))
