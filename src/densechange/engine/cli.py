"""Command-line plumbing: ``--config FILE key=value ...``, one-paragraph user errors, tracebacks for bugs.

A user who mistypes a key or points at a wrong folder gets one paragraph that names the problem,
not a traceback: that is what the toolkit's error classes (:mod:`densechange.engine.errors`) are for. Any other
exception is a bug in the toolkit, so it keeps its full traceback, followed by one line that says
so and what to put in a report.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Callable, Sequence

from densechange.atomic import output_error
from densechange.engine.errors import TOOLKIT_ERRORS

# Errors of the machine rather than of the toolkit, whichever writer meets them (outputs written through
# densechange.atomic already raise OutputError, a toolkit error).
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

BUG_LINE = ("This is a bug in densechange, not a problem with your input. Please report it with the command line, "
            "the traceback above and the output of `pip show densechange torch timm`.")


def parse_args(prog: str, description: str, argv: Sequence[str] | None = None, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """Parse ``--config FILE`` plus free ``key=value`` overrides (kept in ``args.overrides``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="YAML config file (see configs/)")
    if extra is not None:
        extra(parser)
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.epochs=10")
    return parser.parse_args(argv)


def user_message(err: BaseException) -> str:
    """The one paragraph a user sees for a toolkit error: ``error: ...``, wrapped at 100 columns."""
    return "error: " + "\n".join(textwrap.wrap(" ".join(str(err).split()), 100, subsequent_indent="  ",
                                             break_on_hyphens=False, break_long_words=False))


def run_cli(main: Callable[[], int | None]) -> None:
    """Run ``main``; toolkit errors become one paragraph on rank 0 and exit status 2.

    Any other exception prints its traceback and :data:`BUG_LINE` (exit status 1). Set
    ``DENSECHANGE_DEBUG=1`` to get the traceback of toolkit errors too.
    """
    rank0 = os.environ.get("RANK", "0") == "0"
    try:
        code = main()
    except TOOLKIT_ERRORS as err:
        if os.environ.get("DENSECHANGE_DEBUG"):
            raise
        if rank0:
            print(user_message(err), file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit):
        raise
    except OSError as err:
        if err.errno not in ENVIRONMENT_ERRNOS or os.environ.get("DENSECHANGE_DEBUG"):
            traceback.print_exc()
            print(BUG_LINE, file=sys.stderr)
            sys.exit(1)
        # a full disk or a read-only filesystem under any writer: the machine's state, not a bug
        if rank0:
            print(user_message(output_error(Path(str(err.filename or "an output file")), err)), file=sys.stderr)
        sys.exit(2)
    except BaseException:
        traceback.print_exc()
        print(BUG_LINE, file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)
