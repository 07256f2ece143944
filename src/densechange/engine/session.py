"""One training command's session: join the process group, always leave it; create the run folder.

Both ``densechange pretrain`` and ``densechange finetune`` start the same way; this is that start,
written once. The command line itself is read by :func:`densechange.engine.cli.parse_command`
(``data.root`` required), so both commands have ``--print-config`` and a generated ``--help``.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence, Type

from omegaconf import DictConfig

from densechange.engine.cli import CommandSpec
from densechange.engine.config import save_config, to_dict
from densechange.engine.distributed import init_distributed, shutdown
from densechange.engine.loop import RunContext, resolve_resume


def training_spec(prog: str, description: str, schema: Type, choices: dict[str, Sequence[str]],
                  examples: tuple[str, ...] = ()) -> CommandSpec:
    """The command line of a training command: its schema's keys, ``data.root`` required, no positionals."""
    return CommandSpec(prog, description, schema, required=("data.root",), choices=choices, examples=examples)


@contextlib.contextmanager
def training_session(cfg: DictConfig) -> Iterator[RunContext]:
    """Yield the run context of the resolved ``cfg``; the process group is left on exit.

    The run folder is created only by :func:`open_run_folder`, once the data and model were built,
    so a bad dataset leaves no empty run behind.
    """
    dist = init_distributed(cfg.trainer.device, cfg.trainer.dist_timeout_s)
    try:
        yield RunContext(dir=Path(cfg.run.dir), dist=dist, seed=cfg.run.seed, config=to_dict(cfg))
    finally:
        shutdown()


def open_run_folder(cfg: DictConfig, ctx: RunContext) -> None:
    """Create the run folder and write the resolved ``config.yaml`` (rank 0 only).

    A folder that holds another run's checkpoint is refused before anything in it is touched, so
    the refused command leaves that run's ``config.yaml`` as it was.
    """
    resolve_resume(cfg.trainer.resume, ctx.dir)  # raises for a finished run without trainer.resume
    if ctx.is_main:
        ctx.dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, ctx.dir / "config.yaml")
