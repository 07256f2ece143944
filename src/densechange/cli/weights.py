"""``densechange weights list | download | verify | inspect | convert | export | card | entry``.

    densechange weights list
    densechange weights download resnet18_sadl_inria          # last line: the local path
    densechange weights verify FILE sha256=HEX | name=NAME
    densechange weights inspect FILE
    densechange weights convert SRC DST source_layout=torchvision backbone=resnet50
    densechange weights export ENCODER OUT to=timm
    densechange weights card ENCODER out=MODEL_CARD.md license=cc-by-4.0
    densechange weights entry ENCODER url=https://host/enc.safetensors

A failed verification exits 1; a bad file, name or URL is a one-paragraph error with exit status 2.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from densechange.checkpoints import download, registry
from densechange.checkpoints.errors import CheckpointError
from densechange.engine.cli import CommandSpec, parse_command

IMPORTER_NAMES = ("densechange", "sadl", "timm", "torchgeo", "torchvision")
EXPORT_TARGETS = ("timm", "torchvision", "torchgeo", "smp")  # checkpoints.exporters.TARGETS, without importing torch


@dataclass
class ListConfig:
    registry: list[str] = field(default_factory=list)  # extra registry files or URLs, after the built-in one
    cache: Optional[str] = None  # cache folder (default $DENSECHANGE_CACHE or ~/.cache/densechange)


@dataclass
class DownloadConfig(ListConfig):
    name: Optional[str] = None  # a registry name, or a URL (https://, file://, hf://)
    timeout: Optional[float] = None  # seconds to wait for the next byte (default $DENSECHANGE_DOWNLOAD_TIMEOUT or 30)
    deadline: Optional[float] = None  # seconds the whole download may take (default $DENSECHANGE_DOWNLOAD_DEADLINE or 3600)


@dataclass
class VerifyConfig:
    file: Optional[str] = None  # the file to hash
    sha256: Optional[str] = None  # expected sha256, full or a prefix
    name: Optional[str] = None  # registry entry whose hash to expect (instead of sha256)
    registry: list[str] = field(default_factory=list)  # extra registry files or URLs, after the built-in one


@dataclass
class InspectConfig:
    file: Optional[str] = None  # a densechange checkpoint, or foreign weights (.pth, .safetensors, ...)
    trust_edited: bool = False  # load the checkpoint even if its metadata was changed after it was written (warns)


@dataclass
class ConvertConfig:
    src: Optional[str] = None  # the foreign weights file
    dst: Optional[str] = None  # the encoder checkpoint to write (.safetensors)
    source_layout: Optional[str] = None  # densechange | sadl | timm | torchgeo | torchvision (default: detect)
    backbone: str = "resnet18"  # timm backbone name of the weights
    mean: Optional[list[float]] = None  # per-band mean (default: the source's own)
    std: Optional[list[float]] = None  # per-band std (default: the source's own)


@dataclass
class ExportConfig:
    encoder: Optional[str] = None  # a densechange encoder (or change-model) checkpoint
    out: Optional[str] = None  # the file to write (.safetensors or .pth; timm reads both)
    to: Optional[str] = None  # the library whose naming to write: timm | torchvision | torchgeo | smp
    trust_edited: bool = False  # load the checkpoint even if its metadata was changed after it was written (warns)


@dataclass
class CardConfig:
    encoder: Optional[str] = None  # a densechange encoder checkpoint
    out: Optional[str] = None  # where to write the card (default MODEL_CARD.md beside the encoder; - prints it)
    license: str = "other"  # licence id for the card's front matter
    trust_edited: bool = False  # load the checkpoint even if its metadata was changed after it was written (warns)


@dataclass
class EntryConfig:
    encoder: Optional[str] = None  # a densechange encoder checkpoint
    url: Optional[str] = None  # where the file will be downloaded from (https://, file://, hf://)
    name: Optional[str] = None  # the entry's name (default: <backbone>_<method>_<data>)
    licence: str = ""  # licence of the weights, e.g. CC-BY-4.0
    trust_edited: bool = False  # load the checkpoint even if its metadata was changed after it was written (warns)


def _spec(name: str, description: str, schema: type, positionals: tuple[str, ...] = (),
          required: tuple[str, ...] = (), choices: dict | None = None) -> CommandSpec:
    return CommandSpec(f"densechange weights {name}", description, schema, positionals, required, choices or {})


def _summary(tensors: dict) -> str:
    dtypes = Counter(str(t.dtype).replace("torch.", "") for t in tensors.values())
    params = sum(t.numel() for t in tensors.values())
    return (f"tensors: {len(tensors)}  parameters (incl. buffers): {params:,}  dtype: "
            + ", ".join(f"{d} ({n})" for d, n in sorted(dtypes.items())))


LIST_SPEC = _spec("list", "The registry's named weights, and whether each is cached.", ListConfig)
DOWNLOAD_SPEC = _spec("download", "Download named weights (or a URL) into the cache, hash-checked; the last line "
                      "is the local path.", DownloadConfig, ("name",), ("name",))
VERIFY_SPEC = _spec("verify", "Print a file's sha256 and compare it with a hash or a registry entry (exit 1 on a "
                    "mismatch).", VerifyConfig, ("file",), ("file",))
INSPECT_SPEC = _spec("inspect", "Print a checkpoint's metadata and a tensor summary.", InspectConfig, ("file",),
                     ("file",))
CONVERT_SPEC = _spec("convert", "Write foreign weights as a densechange encoder checkpoint.", ConvertConfig,
                     ("src", "dst"), ("src", "dst"), {"source_layout": IMPORTER_NAMES})
EXPORT_SPEC = _spec("export", "Write an encoder's backbone (and neck, where the target has a place) in another "
                    "library's naming, verified against that library's own model.", ExportConfig,
                    ("encoder", "out"), ("encoder", "out", "to"), {"to": EXPORT_TARGETS})
CARD_SPEC = _spec("card", "Write an encoder's model card from its metadata.", CardConfig, ("encoder",), ("encoder",))
ENTRY_SPEC = _spec("entry", "Print the registry entry of an encoder that will be served at url.", EntryConfig,
                   ("encoder",), ("encoder", "url"))


def list_weights(argv: Sequence[str]) -> int:
    cfg = parse_command(LIST_SPEC, argv)
    if cfg is None:
        return 0
    entries = registry.load_registry(list(cfg.registry), cfg.cache)
    rows = [("name", "backbone", "bands", "licence", "cached", "description")]
    for e in entries:
        cached = "yes" if download.entry_cache_path(e, cfg.cache).exists() else "no"
        rows.append((e.name, e.backbone, ",".join(e.bands) or str(e.in_chans), e.licence, cached, e.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def download_weights(argv: Sequence[str]) -> int:
    cfg = parse_command(DOWNLOAD_SPEC, argv)
    if cfg is None:
        return 0
    bounds = {"timeout": cfg.timeout, "deadline": cfg.deadline}
    if re.match(r"^[a-z]+://", cfg.name, re.IGNORECASE):
        path = download.fetch(cfg.name, cache_dir=cfg.cache, **bounds)
    else:
        path = download.fetch_entry(registry.get_entry(cfg.name, list(cfg.registry), cfg.cache), cache_dir=cfg.cache,
                                    **bounds)
    print(path)
    return 0


def verify(argv: Sequence[str]) -> int:
    cfg = parse_command(VERIFY_SPEC, argv)
    if cfg is None:
        return 0
    if cfg.sha256 and cfg.name:
        raise CheckpointError("weights verify: give sha256=HEX or name=NAME, not both.")
    path = Path(cfg.file)
    if not path.is_file():
        raise CheckpointError(f"no file at {path}")
    digest = download.sha256_file(path)
    if cfg.sha256:
        expected = str(cfg.sha256).lower()
        ok = digest == expected if len(expected) == 64 else digest.startswith(expected)
    elif cfg.name:
        entry = registry.get_entry(cfg.name, list(cfg.registry))
        expected = entry.sha256 or f"{entry.sha256_prefix}..."
        ok = entry.matches(digest)
    else:
        print(f"sha256 {digest}  {path}")
        return 0
    print(f"{'OK' if ok else 'MISMATCH'} sha256 {digest}  {path}" + ("" if ok else f" (expected {expected})"))
    return 0 if ok else 1


def inspect(argv: Sequence[str]) -> int:
    cfg = parse_command(INSPECT_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.checkpoints import importers
    from densechange.checkpoints.format import (is_densechange_file, load_file, looks_like_safetensors, metadata_status,
                                                read_header)

    path = Path(cfg.file)
    if path.is_file() and not (looks_like_safetensors(path) and is_densechange_file(path)):
        state = importers.read_state_dict(path)
        print(json.dumps({"foreign": True, "layout": importers.detect_layout(state)}, indent=2))
        print(_summary(state))
        return 0
    status = metadata_status(read_header(path))
    tensors, meta = load_file(path, trust_edited=cfg.trust_edited)
    print(json.dumps(meta, indent=2, sort_keys=True))
    print(_summary(tensors))
    print(f"metadata: {_STATUS[status]}")
    return 0


_STATUS = {
    "intact": "as written (the metadata digest matches)",
    "edited": "EDITED after the file was written (the metadata digest does not match)",
    "unchecked": "no metadata digest (written by an older densechange): edits cannot be detected",
}


def convert(argv: Sequence[str]) -> int:
    cfg = parse_command(CONVERT_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.checkpoints.convert import convert as convert_weights

    mean = None if cfg.mean is None else list(cfg.mean)
    std = None if cfg.std is None else list(cfg.std)
    print(convert_weights(cfg.src, cfg.dst, from_=cfg.source_layout, backbone=cfg.backbone, mean=mean, std=std))
    return 0


def export(argv: Sequence[str]) -> int:
    cfg = parse_command(EXPORT_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.checkpoints.exporters import export_encoder
    from densechange.checkpoints.factory import load_encoder

    done = export_encoder(load_encoder(cfg.encoder, trust_edited=cfg.trust_edited), cfg.out, cfg.to)
    for note in done.notes:
        print(f"note: {note}")
    print(f"{done.path}: {done.target} weights; the {done.target} model loads them strictly and matches this encoder's "
          f"features within {done.max_difference:.2g}")
    return 0


def card(argv: Sequence[str]) -> int:
    cfg = parse_command(CARD_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.checkpoints.card import card_for_file, write_card

    if cfg.out == "-":
        print(card_for_file(cfg.encoder, cfg.license, cfg.trust_edited))
    else:
        print(write_card(cfg.encoder, cfg.out, cfg.license, cfg.trust_edited))
    return 0


def entry(argv: Sequence[str]) -> int:
    cfg = parse_command(ENTRY_SPEC, argv)
    if cfg is None:
        return 0
    from densechange.checkpoints.publish import registry_entry

    print(json.dumps(registry_entry(cfg.encoder, cfg.url, cfg.name, cfg.licence, cfg.trust_edited), indent=2))
    return 0
