"""Command line of the checkpoints package: ``python -m checkpoints COMMAND``.

    python -m checkpoints list
    python -m checkpoints download resnet18_imagenet [--cache DIR]
    python -m checkpoints verify FILE [--sha256 HEX | --name NAME]
    python -m checkpoints inspect FILE
    python -m checkpoints convert SRC DST --from sadl|torchvision|timm|torchgeo [--backbone NAME]

Errors print one line naming the problem and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Sequence

from .format import CheckpointError, load_file


def _inspect(args: argparse.Namespace) -> None:
    tensors, meta = load_file(args.file)
    print(json.dumps(meta, indent=2, sort_keys=True))
    dtypes = Counter(str(t.dtype).replace("torch.", "") for t in tensors.values())
    params = sum(t.numel() for t in tensors.values())
    print(f"tensors: {len(tensors)}  parameters (incl. buffers): {params:,}  dtype: "
          + ", ".join(f"{d} ({n})" for d, n in sorted(dtypes.items())))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m checkpoints", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print a checkpoint's metadata and a tensor summary")
    p.add_argument("file")
    p.set_defaults(func=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
