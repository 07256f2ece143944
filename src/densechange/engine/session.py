"""One training command's session: join the process group, always leave it; create the run folder.

The session also owns the run's TensorBoard stream (:mod:`densechange.engine.board`): made with the
run context (rank 0, unless ``run.tensorboard=false``), told where a resumed run continues when the
folder is opened, closed when the session ends.

Both ``densechange pretrain`` and ``densechange finetune`` start the same way; this is that start,
written once. The command line itself is read by :func:`densechange.engine.cli.parse_command`
(``data.root`` required), so both commands have ``--print-config`` and a generated ``--help``.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence, Type

from omegaconf import DictConfig

from densechange.checkpoints import read_metadata
from densechange.checkpoints.format import trust_edited_files
from densechange.engine.board import RunBoard
from densechange.engine.cli import CommandSpec
from densechange.engine.config import recorded_config, save_config
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
    with trust_edited_files(cfg.get("trust_edited", False)):  # reaches model.init, model.encoder, trainer.resume
        dist = init_distributed(cfg.trainer.device, cfg.trainer.dist_timeout_s)
        board = RunBoard(cfg.run.dir if cfg.run.tensorboard and dist.is_main else None)
        try:
            # what checkpoints record: no value of the environment, no URL secrets (engine.config.recorded_config)
            yield RunContext(dir=Path(cfg.run.dir), dist=dist, seed=cfg.run.seed, config=recorded_config(cfg),
                             board=board)
        finally:
            board.close()
            shutdown()


def open_run_folder(cfg: DictConfig, ctx: RunContext) -> None:
    """Create the run folder and write the recorded ``config.yaml`` (rank 0 only; see ``recorded_config``);
    start the TensorBoard stream.

    A folder that holds another run's checkpoint is refused before anything in it is touched, so
    the refused command leaves that run's ``config.yaml`` as it was. The stream learns the step the
    run resumes after before anything is written to it, so pictures made before training (the
    first pseudo-masks) already fall after the purge marker.
    """
    resume = resolve_resume(cfg.trainer.resume, ctx.dir)  # raises for a finished run without trainer.resume
    loop = read_metadata(resume).get("loop", {}) if resume is not None else {}  # load_state refuses a file that is no resume state
    ctx.board.start(int(loop.get("step", 0)))
    if ctx.is_main:
        ctx.dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, ctx.dir / "config.yaml")
