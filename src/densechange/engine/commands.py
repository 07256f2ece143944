"""The ``densechange`` command: one entry point whose subcommands front every stage and tool.

Every subcommand, nested ones (``weights download``) included, is one row of :data:`COMMANDS`: a
``module:function`` taking the remaining arguments, named as a string and imported only when it is
chosen, so ``densechange --help`` starts at once and the engine never imports a stage (the stages
stand on it, not the other way round). Every command reads the one grammar of
:func:`densechange.engine.cli.parse_command`. The module forms keep working:
``python -m densechange.pretrain``, ``torchrun -m densechange.finetune`` and so on.

Example:
    densechange pretrain --config configs/pretrain/demo.yaml data.root=synthetic
    densechange predict checkpoint=runs/x/best.safetensors a=t1.tif b=t2.tif out=change.tif
    densechange weights download resnet18_sadl_inria
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from densechange.engine.cli import CommandSpec, run_cli
from densechange.engine.errors import ConfigError


@dataclass(frozen=True)
class Command:
    """A subcommand: ``module:function`` taking the remaining arguments, one line of help, and the
    name of the module's :class:`~densechange.engine.cli.CommandSpec` (its keys: ``--help``, the docs)."""

    target: str
    help: str
    spec: str = "SPEC"

    def run(self, argv: Sequence[str]) -> int:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function or "main")(list(argv)) or 0

    def load_spec(self) -> CommandSpec:
        return getattr(importlib.import_module(self.target.partition(":")[0]), self.spec)


COMMANDS: dict[str, Command | dict[str, Command]] = {
    "pretrain": Command("densechange.pretrain.train:main", "SaDL dense contrastive pretraining of an encoder"),
    "probe": Command("densechange.pretrain.probe.cli:main", "dense-feature probe of an encoder (kNN / linear mIoU)"),
    "finetune": Command("densechange.finetune.train:main", "DeepCL change-detection finetuning"),
    "predict": Command("densechange.finetune.predict:main", "change maps for image pairs or whole scenes"),
    "evaluate": Command("densechange.finetune.evaluate:main", "scores of a change model on a dataset split"),
    "export": Command("densechange.finetune.export:main", "export a change model to ONNX"),
    "compare": Command("densechange.finetune.compare.cli:main", "grid of finetuning runs: encoders x variants x fractions"),
    "check": Command("densechange.cli.datasets:check", "report every problem of a dataset folder", "CHECK_SPEC"),
    "synth": Command("densechange.cli.datasets:synth", "write a synthetic dataset to disk", "SYNTH_SPEC"),
    "tile": Command("densechange.cli.datasets:tile", "cut a dataset's rasters into tiles", "TILE_SPEC"),
    "stack": Command("densechange.cli.datasets:stack", "both dates as one virtual raster", "STACK_SPEC"),
    "stats": Command("densechange.cli.datasets:stats", "per-band mean and std to paste as data.mean/data.std", "STATS_SPEC"),
    "weights": {
        "list": Command("densechange.cli.weights:list_weights", "the registry's named weights", "LIST_SPEC"),
        "download": Command("densechange.cli.weights:download_weights", "fetch named weights into the cache, hash-checked", "DOWNLOAD_SPEC"),
        "verify": Command("densechange.cli.weights:verify", "check a file's sha256 against a hash or a registry entry", "VERIFY_SPEC"),
        "inspect": Command("densechange.cli.weights:inspect", "a checkpoint's metadata and tensors", "INSPECT_SPEC"),
        "convert": Command("densechange.cli.weights:convert", "foreign weights (timm, torchvision, torchgeo, SaDL) to an encoder file", "CONVERT_SPEC"),
        "export": Command("densechange.cli.weights:export", "an encoder in timm, torchvision, torchgeo or smp naming", "EXPORT_SPEC"),
        "card": Command("densechange.cli.weights:card", "a model card for an encoder file", "CARD_SPEC"),
        "entry": Command("densechange.cli.weights:entry", "a registry entry for publishing an encoder file", "ENTRY_SPEC"),
    },
}


def usage(table: Mapping[str, Any] = COMMANDS, prog: str = "densechange") -> str:
    width = max(map(len, table))
    rows = "\n".join(f"  {name:<{width}}  {c.help if isinstance(c, Command) else _group_help(c)}"
                      for name, c in table.items())
    return (f"usage: {prog} COMMAND [ARGS ...]\n\ncommands:\n" + rows +
            f"\n\n`{prog} COMMAND --help` lists a command's keys with their defaults.")


def _group_help(group: Mapping[str, Command]) -> str:
    return " | ".join(group)


def dispatch(argv: Sequence[str]) -> int:
    """Run ``densechange ARGV`` in this process and return its exit status.

    Toolkit errors propagate rather than becoming a message, which is what a test or a notebook
    wants; :func:`main` adds the command-line wrapper around it.
    """
    table: Mapping[str, Any] = COMMANDS
    prog = "densechange"
    rest = list(argv)
    while True:
        if not rest or rest[0] in ("-h", "--help"):
            print(usage(table, prog))
            return 0 if rest else 2
        name, rest = rest[0], rest[1:]
        entry = table.get(name)
        if entry is None:
            within = "" if table is COMMANDS else f" of {prog}"
            raise ConfigError(f"unknown command {name!r}{within}; choose one of: {', '.join(table)}")
        if isinstance(entry, Command):
            return entry.run(rest)
        table, prog = entry, f"{prog} {name}"


def main(argv: Sequence[str] | None = None) -> None:
    """The ``densechange`` console script: one subcommand, its exit status (2 for a mistake)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(usage())
        sys.exit(2)
    if args[0] == "--version":
        from densechange import __version__
        print(f"densechange {__version__}")
        sys.exit(0)
    run_cli(lambda: dispatch(args))


def walk(table: Mapping[str, Any] = COMMANDS, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    """Every command of the table with its words (``("weights", "download")``), nested ones included."""
    for name, entry in table.items():
        if isinstance(entry, Command):
            yield (*prefix, name), entry
        else:
            yield from walk(entry, (*prefix, name))
