"""Command line of the checkpoints package: ``densechange weights COMMAND``.

    densechange weights list [--registry FILE_OR_URL ...]
    densechange weights download NAME_OR_URL [--cache DIR]     # last line: the local path
    densechange weights verify FILE [--sha256 HEX | --name NAME]
    densechange weights inspect FILE
    densechange weights convert SRC DST --from sadl|torchvision|timm|torchgeo [--backbone NAME]
    densechange weights export ENCODER OUT --to timm|torchvision|torchgeo|smp
    densechange weights card ENCODER [--out MODEL_CARD.md] [--license ID]
    densechange weights entry ENCODER --url URL [--name NAME] [--licence ID]

Errors print one line naming the problem and exit with status 2; a failed verification exits 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

from densechange.checkpoints import download, registry
from densechange.checkpoints.errors import CheckpointError

IMPORTER_NAMES = ("densechange", "sadl", "timm", "torchgeo", "torchvision")
EXPORT_TARGETS = ("timm", "torchvision", "torchgeo", "smp")  # checkpoints.exporters.TARGETS, without importing torch


def _summary(tensors: dict) -> str:
    dtypes = Counter(str(t.dtype).replace("torch.", "") for t in tensors.values())
    params = sum(t.numel() for t in tensors.values())
    return (f"tensors: {len(tensors)}  parameters (incl. buffers): {params:,}  dtype: "
            + ", ".join(f"{d} ({n})" for d, n in sorted(dtypes.items())))


def _list(args: argparse.Namespace) -> int:
    entries = registry.load_registry(args.registry, args.cache)
    rows = [("name", "backbone", "bands", "licence", "cached", "description")]
    for e in entries:
        cached = "yes" if download.entry_cache_path(e, args.cache).exists() else "no"
        rows.append((e.name, e.backbone, ",".join(e.bands) or str(e.in_chans), e.licence, cached, e.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _download(args: argparse.Namespace) -> int:
    if re.match(r"^[a-z]+://", args.name, re.IGNORECASE):
        path = download.fetch(args.name, cache_dir=args.cache)
    else:
        path = download.fetch_entry(registry.get_entry(args.name, args.registry, args.cache), cache_dir=args.cache)
    print(path)
    return 0


def _verify(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CheckpointError(f"no file at {path}")
    digest = download.sha256_file(path)
    if args.sha256:
        expected = args.sha256.lower()
        ok = digest == expected if len(expected) == 64 else digest.startswith(expected)
    elif args.name:
        entry = registry.get_entry(args.name, args.registry)
        expected = entry.sha256 or f"{entry.sha256_prefix}..."
        ok = entry.matches(digest)
    else:
        print(f"sha256 {digest}  {path}")
        return 0
    print(f"{'OK' if ok else 'MISMATCH'} sha256 {digest}  {path}" + ("" if ok else f" (expected {expected})"))
    return 0 if ok else 1


def _inspect(args: argparse.Namespace) -> int:
    from densechange.checkpoints import importers
    from densechange.checkpoints.format import is_densechange_file, load_file, looks_like_safetensors

    path = Path(args.file)
    if path.is_file() and not (looks_like_safetensors(path) and is_densechange_file(path)):
        state = importers.read_state_dict(path)
        print(json.dumps({"foreign": True, "layout": importers.detect_layout(state)}, indent=2))
        print(_summary(state))
        return 0
    tensors, meta = load_file(path)
    print(json.dumps(meta, indent=2, sort_keys=True))
    print(_summary(tensors))
    return 0


def _floats(text: str | None) -> list[float] | None:
    return None if text is None else [float(v) for v in text.split(",")]


def _convert(args: argparse.Namespace) -> int:
    from densechange.checkpoints.convert import convert

    out = convert(args.src, args.dst, from_=args.from_, backbone=args.backbone, mean=_floats(args.mean),
                  std=_floats(args.std))
    print(out)
    return 0


def _export(args: argparse.Namespace) -> int:
    from densechange.checkpoints.exporters import export_encoder
    from densechange.checkpoints.factory import load_encoder

    done = export_encoder(load_encoder(args.encoder), args.out, args.to)
    for note in done.notes:
        print(f"note: {note}")
    print(f"{done.path}: {done.target} weights; the {done.target} model loads them strictly and matches this encoder's "
          f"features within {done.max_difference:.2g}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from densechange.checkpoints.card import card_for_file, write_card

    if args.out == "-":
        print(card_for_file(args.encoder, args.license))
    else:
        print(write_card(args.encoder, args.out, args.license))
    return 0


def _entry(args: argparse.Namespace) -> int:
    from densechange.checkpoints.publish import registry_entry

    print(json.dumps(registry_entry(args.encoder, args.url, args.name, args.licence), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densechange weights", description="Encoder checkpoints and weights.")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("list", _list, "list the registry's named weights")
    p.add_argument("--registry", action="append", help="extra registry file or URL (repeatable)")
    p.add_argument("--cache", help="cache folder (default $DENSECHANGE_CACHE or ~/.cache/densechange)")
    p = add("download", _download, "download named weights (or a URL) into the cache; prints the path last")
    p.add_argument("name")
    p.add_argument("--cache", help="cache folder (default $DENSECHANGE_CACHE or ~/.cache/densechange)")
    p.add_argument("--registry", action="append", help="extra registry file or URL (repeatable)")
    p = add("verify", _verify, "print a file's sha256 and compare it with a hash or a registry entry")
    p.add_argument("file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--sha256", help="expected sha256, full or prefix")
    group.add_argument("--name", help="registry entry whose hash to expect")
    p.add_argument("--registry", action="append", help="extra registry file or URL (repeatable)")
    p = add("inspect", _inspect, "print a checkpoint's metadata and a tensor summary")
    p.add_argument("file")
    p = add("convert", _convert, "write foreign weights as a densechange encoder checkpoint")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--from", dest="from_", choices=IMPORTER_NAMES, help="source layout (default: detect)")
    p.add_argument("--backbone", default="resnet18", help="timm backbone name of the weights (default resnet18)")
    p.add_argument("--mean", help="comma-separated per-band mean (default: the source's own)")
    p.add_argument("--std", help="comma-separated per-band std (default: the source's own)")
    p = add("export", _export, "write an encoder's backbone (and neck, where the target has a place) in another "
            "library's naming, verified against that library's own model")
    p.add_argument("encoder", help="a densechange encoder (or change-model) checkpoint")
    p.add_argument("out", help="the file to write (.safetensors or .pth; timm reads both)")
    p.add_argument("--to", required=True, choices=EXPORT_TARGETS, help="the library whose naming to write")
    p = add("card", _card, "write an encoder's model card from its metadata (default: MODEL_CARD.md beside it)")
    p.add_argument("encoder")
    p.add_argument("--out", help="where to write the card; - prints it")
    p.add_argument("--license", default="other", help="licence id for the card's front matter (default: other)")
    p = add("entry", _entry, "print the registry entry of an encoder that will be served at --url")
    p.add_argument("encoder")
    p.add_argument("--url", required=True, help="where the file will be downloaded from (https://, file://, hf://)")
    p.add_argument("--name", help="the entry's name (default: <backbone>_<method>_<data>)")
    p.add_argument("--licence", default="", help="licence of the weights, e.g. CC-BY-4.0")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
