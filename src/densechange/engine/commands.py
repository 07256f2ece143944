"""The ``densechange`` command: one entry point whose subcommands front every stage and tool.

Each subcommand is the ``main(argv)`` of the module that owns it, named here as a string and
imported only when it is chosen: ``densechange --help`` starts at once, and the engine never
imports a stage (the stages stand on it, not the other way round). The module forms keep
working: ``python -m densechange.pretrain``, ``torchrun -m densechange.pretrain`` and so on.

Example:
    densechange pretrain --config configs/pretrain/demo.yaml data.root=synthetic
    densechange predict --checkpoint runs/x/best.safetensors --a t1.tif --b t2.tif --out change.tif
"""
from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Sequence

from densechange.engine.cli import run_cli
from densechange.engine.errors import ConfigError


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose ``main(argv)`` runs it, and words put before the user's arguments."""

    module: str
    help: str
    prefix: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "pretrain": Command("densechange.pretrain.train", "SaDL dense contrastive pretraining of an encoder"),
    "probe": Command("densechange.pretrain.probe.cli", "dense-feature probe of an encoder (kNN / linear mIoU)"),
    "finetune": Command("densechange.finetune.train", "DeepCL change-detection finetuning"),
    "predict": Command("densechange.finetune.predict", "change maps for image pairs or whole scenes"),
    "evaluate": Command("densechange.finetune.evaluate", "scores of a change model on a dataset split"),
    "export": Command("densechange.finetune.export", "export a change model to ONNX"),
    "compare": Command("densechange.finetune.compare.cli", "grid of finetuning runs: encoders x variants x fractions"),
    "check": Command("densechange.datasets.tools.cli", "report every problem of a dataset folder", ("check",)),
    "synth": Command("densechange.datasets.tools.cli", "write a synthetic dataset to disk", ("synth",)),
    "tile": Command("densechange.datasets.tools.cli", "cut a dataset's rasters into tiles", ("tile",)),
    "stack": Command("densechange.datasets.tools.cli", "both dates as one virtual raster", ("stack",)),
    "stats": Command("densechange.datasets.tools.cli", "per-band mean and std to paste as data.mean/data.std", ("stats",)),
    "weights": Command("densechange.checkpoints.cli", "checkpoints and weights: list, download, verify, inspect, convert"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {c.help}" for name, c in COMMANDS.items())
    return ("usage: densechange COMMAND [ARGS ...]\n\ncommands:\n" + rows +
            "\n\n`densechange COMMAND --help` describes a command's arguments.")


def dispatch(argv: Sequence[str]) -> int:
    """Run ``densechange ARGV`` in this process and return its exit status.

    Toolkit errors propagate rather than becoming a message, which is what a test or a notebook
    wants; :func:`main` adds the command-line wrapper around it.
    """
    name, rest = argv[0], list(argv[1:])
    command = COMMANDS.get(name)
    if command is None:
        raise ConfigError(f"unknown command {name!r}; choose one of: {', '.join(COMMANDS)}")
    module = importlib.import_module(command.module)
    return module.main([*command.prefix, *rest]) or 0


def main(argv: Sequence[str] | None = None) -> None:
    """The ``densechange`` console script: one subcommand, its exit status (2 for a mistake)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if args else 2)
    if args[0] == "--version":
        from densechange import __version__
        print(f"densechange {__version__}")
        sys.exit(0)
    run_cli(lambda: dispatch(args))
