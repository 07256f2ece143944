"""Command-line plumbing: one grammar for every command, one-paragraph user errors, tracebacks for bugs.

A user who mistypes a key or points at a wrong folder gets one paragraph that names the problem,
not a traceback: that is what the toolkit's error classes (:mod:`densechange.engine.errors`) are for. Any other
exception is a bug in the toolkit, so it keeps its full traceback, followed by one line that says
so and what to put in a report.
"""
from __future__ import annotations

import difflib
import errno
import os
import re
import sys
import textwrap
import traceback
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from omegaconf import DictConfig

from densechange.atomic import output_error
from densechange.redact import redact_text
from densechange.engine.config import load_config, print_config
from densechange.engine.config_docs import describe, help_text
from densechange.engine.errors import TOOLKIT_ERRORS, ConfigError

# Errors of the machine rather than of the toolkit, whichever writer meets them (outputs written through
# densechange.atomic already raise OutputError, a toolkit error).
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

BUG_LINE = ("This is a bug in densechange, not a problem with your input. Please report it with the command line, "
            "the traceback above and the output of `pip show densechange torch timm`.")


KEY_VALUE = re.compile(r"^[A-Za-z_][\w.\-\[\]]*=")


@dataclass(frozen=True)
class CommandSpec:
    """What a command accepts: its config schema, the keys its positional arguments fill, and checks.

    Every command reads one grammar, ``densechange COMMAND [POSITIONAL ...] [--config FILE]
    [--print-config] [key=value ...]``: settings are the schema's dotted keys, the same in YAML
    files and on the command line, and ``--help`` lists them from the dataclasses.
    """

    prog: str
    description: str
    schema: type
    positionals: tuple[str, ...] = ()  # keys the positional arguments fill, in order
    required: tuple[str, ...] = ()  # keys that must be set
    choices: Mapping[str, Sequence[str]] = dataclass_field(default_factory=dict)
    examples: tuple[str, ...] = ()

    def usage(self) -> str:
        slots = " ".join(k.rsplit(".", 1)[-1].upper() for k in self.positionals)
        return f"usage: {self.prog} {slots + ' ' if slots else ''}[--config FILE] [--print-config] [key=value ...]"

    def help(self) -> str:
        """The ``--help`` text: usage, description, positionals, options and every key with its default."""
        parts = [self.usage(), "", self.description, ""]
        if self.positionals:
            parts += ["positional arguments:"] + [f"  {k.rsplit('.', 1)[-1].upper():<14}the key {k}"
                                                   for k in self.positionals] + [""]
        parts += ["options:",
                  "  --config FILE   YAML file of keys, merged before the key=value arguments",
                  "  --print-config  print the resolved config as YAML (environment values as their references) and exit",
                  "  -h, --help      this text", "",
                  "keys (key=value; the defaults shown):", help_text(self.schema)]
        if self.choices:
            parts += ["", "valid values:"] + [f"  {k}: {' | '.join(map(str, v))}" for k, v in self.choices.items()]
        if self.required:
            parts += ["", "required: " + ", ".join(self.required)]
        if self.examples:
            parts += ["", "examples:"] + [f"  {e}" for e in self.examples]
        return "\n".join(parts)


@dataclass(frozen=True)
class CommandLine:
    """One command line taken apart, before anything is merged: what the user typed, key by key."""

    config: str | None  # the --config file
    overrides: tuple[str, ...]  # the key=value tokens, in order
    values: Mapping[str, str]  # positional key -> the argument, verbatim
    print_config: bool


def read_command_line(spec: CommandSpec, argv: Sequence[str] | None = None) -> CommandLine | None:
    """The parts of one command line, or ``None`` after printing ``--help``.

    A token ``key=value`` is an override; any other bare token fills the next positional key; an
    unknown ``--option`` is a :class:`ConfigError` that names the key it probably meant.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    config_file: str | None = None
    show = False
    overrides: list[str] = []
    values: dict[str, str] = {}
    slots = list(spec.positionals)
    i = 0
    while i < len(args):
        token = args[i]
        if token in ("-h", "--help"):
            print(spec.help())
            return None
        if token == "--print-config":
            show = True
        elif token == "--config" or token.startswith("--config="):
            if "=" in token:
                config_file = token.split("=", 1)[1]
            elif i + 1 < len(args):
                i += 1
                config_file = args[i]
            else:
                raise ConfigError(f"{spec.prog}: --config needs a YAML file.")
        elif token.startswith("-") and len(token) > 1 and not _is_number(token):
            raise ConfigError(f"{spec.prog}: unknown option {token}. Settings are key=value{_near_key(spec, token)}; "
                              f"see `{spec.prog} --help`.")
        elif KEY_VALUE.match(token):
            overrides.append(token)
        elif slots:
            values[slots.pop(0)] = token
        else:
            raise ConfigError(f"{spec.prog}: unexpected argument {token!r}. Settings are key=value; "
                              f"see `{spec.prog} --help`.")
        i += 1
    return CommandLine(config_file, tuple(overrides), values, show)


def parse_command(spec: CommandSpec, argv: Sequence[str] | None = None) -> DictConfig | None:
    """The resolved, read-only config of one command line, or ``None`` when it was only asked for help.

    ``--help`` prints the key list and ``--print-config`` the resolved config (both return ``None``,
    so the command exits 0 having run nothing). See :func:`read_command_line` for the tokens.
    """
    line = read_command_line(spec, argv)
    if line is None:
        return None
    cfg = load_config(spec.schema, line.config, line.overrides, choices=dict(spec.choices), required=spec.required,
                      values=dict(line.values))
    if line.print_config:
        print(print_config(cfg), end="")
        return None
    return cfg


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _near_key(spec: CommandSpec, option: str) -> str:
    """`` (did you mean window.size=...?)`` for ``--window``, from the schema's keys."""
    word = option.lstrip("-").split("=", 1)[0].replace("-", "_")
    keys = [k.name for k in describe(spec.schema)]
    near = [k for k in keys if k == word or k.endswith("." + word) or k.startswith(word + ".")]
    near = near or difflib.get_close_matches(word, keys, n=2)
    return f" (did you mean {' or '.join(k + '=...' for k in near[:2])}?)" if near else ""


def user_message(err: BaseException) -> str:
    """The one paragraph a user sees for a toolkit error: ``error: ...``, wrapped at 100 columns, URLs' secrets masked."""
    return "error: " + "\n".join(textwrap.wrap(" ".join(redact_text(str(err)).split()), 100, subsequent_indent="  ",
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
