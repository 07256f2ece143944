"""Command-line plumbing: ``--config FILE key=value ...`` and one-paragraph user errors.

A user who mistypes a key or points at a wrong folder gets one paragraph that names the problem,
not a traceback. Programming errors still raise normally.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Callable, Sequence


def user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that describe bad input rather than a bug."""
    from checkpoints.format import CheckpointError
    from datasets.errors import DatasetError

    from .config import ConfigError
    from .loop import TrainingError

    return (ConfigError, DatasetError, CheckpointError, TrainingError, FileNotFoundError, ValueError)


def parse_args(prog: str, description: str, argv: Sequence[str] | None = None, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """Parse ``--config FILE`` plus free ``key=value`` overrides (kept in ``args.overrides``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="YAML config file (see configs/)")
    if extra is not None:
        extra(parser)
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.epochs=10")
    return parser.parse_args(argv)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run ``main``; print user errors as one paragraph on rank 0 and exit with status 2.

    Set ``DENSECHANGE_DEBUG=1`` to get the full traceback instead.
    """
    try:
        code = main()
    except user_error_types() as err:
        if os.environ.get("DENSECHANGE_DEBUG"):
            raise
        if os.environ.get("RANK", "0") == "0":
            msg = " ".join(str(err).split()) if not isinstance(err, FileNotFoundError) else f"file not found: {err.filename or err}"
            print("error: " + "\n".join(textwrap.wrap(msg, 100, subsequent_indent="  ")), file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
