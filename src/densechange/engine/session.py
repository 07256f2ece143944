"""One training command's session: parse, configure, join the process group, always leave it.

Both ``densechange pretrain`` and ``densechange finetune`` start the same way; this is that start,
written once.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence, Type

from omegaconf import DictConfig

from densechange.engine.cli import parse_args
from densechange.engine.config import load_config, save_config, to_dict
from densechange.engine.distributed import init_distributed, shutdown
from densechange.engine.loop import RunContext, resolve_resume


@contextlib.contextmanager
def training_session(
    schema: Type,
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    choices: dict[str, Sequence[str]],
) -> Iterator[tuple[DictConfig, RunContext]]:
    """Yield the validated config and the run context; the process group is left on exit.

    ``data.root`` is required; the run folder is created only by :func:`open_run_folder`, once the
    data and model were built, so a bad dataset leaves no empty run behind.
    """
    args = parse_args(prog, description, argv)
    cfg = load_config(schema, args.config, args.overrides, choices=choices, required=("data.root",))
    dist = init_distributed(cfg.trainer.device, cfg.trainer.dist_timeout_s)
    try:
        yield cfg, RunContext(dir=Path(cfg.run.dir), dist=dist, seed=cfg.run.seed, config=to_dict(cfg))
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
