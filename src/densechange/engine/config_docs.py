"""Every key of a config schema with its type, default and description, read from the dataclasses.

The description of a field is the comment on its line (``lr: float = 0.01  # peak learning rate``),
or, for a field whose line has no room, ``field(metadata={"doc": ...})``. Both the ``--help`` of every
command and the docs' config reference are generated from here, so a key is documented once, beside
its default, and a key without a description is found by a test rather than by a user.

Example:
    >>> for key in describe(TrainerConfig, "trainer"):
    ...     print(key.name, key.default, key.doc)
    trainer.epochs 200 passes over the training data
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class KeyDoc:
    """One config key: dotted name, type as written, default as YAML would show it, description."""

    name: str
    type: str
    default: str
    doc: str


@lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """``field name -> trailing comment`` for the fields declared in ``cls``'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    line_field: dict[int, str] = {}
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    depth = 0
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        elif (tok.type == tokenize.NAME and depth == 0 and tok.start[1] == 4 and i + 1 < len(tokens)
              and tokens[i + 1].string == ":"):
            line_field[tok.start[0]] = tok.string
        elif tok.type == tokenize.COMMENT and tok.start[0] in line_field:
            comments[line_field[tok.start[0]]] = tok.string.lstrip("#").strip()
    return comments


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp.replace("Optional[", "").rstrip("]") if tp.startswith("Optional[") else tp
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) if len(args) == 1 else " | ".join(_type_name(a) for a in args)
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "???"


def show_value(value: Any) -> str:
    """A default as it is written after ``key=`` on a command line: YAML scalars, flow lists without spaces."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}: {show_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def describe(schema: type, prefix: str = "", defaults: Any = None) -> list[KeyDoc]:
    """Every leaf key of ``schema`` (nested dataclasses flattened to dotted names), in declaration order.

    A section's defaults are those of the instance its parent makes (``trainer`` of finetuning is
    ``TrainerConfig(batch_size=8, ...)``, not ``TrainerConfig()``), so the help shows what a run gets.
    """
    hints = typing.get_type_hints(schema)
    docs: dict[str, str] = {}
    for klass in reversed(schema.__mro__):  # a subclass's comment wins over its base's
        if dataclasses.is_dataclass(klass):
            docs.update(field_comments(klass))
    out: list[KeyDoc] = []
    for f in dataclasses.fields(schema):
        name = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints.get(f.name, f.type)
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        inner = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Union else tp
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            out.extend(describe(inner, name, default if dataclasses.is_dataclass(default) else None))
            continue
        doc = f.metadata.get("doc") or docs.get(f.name, "")
        out.append(KeyDoc(name, _type_name(tp), show_value(default), doc))
    return out


def undocumented(schema: type) -> list[str]:
    """Keys of ``schema`` without a description (a test keeps this empty for every command)."""
    return [k.name for k in describe(schema) if not k.doc]


def help_text(schema: type) -> str:
    """The key list of a command's ``--help``: one key per line, its default, then its description."""
    keys = describe(schema)
    width = min(max((len(f"{k.name}={k.default}") for k in keys), default=0), 44)
    lines = []
    for k in keys:
        head = f"  {k.name}={k.default}"
        if len(head) - 2 > width:
            lines.append(head)
            head = ""
        lines.append(f"{head:<{width + 4}}{k.doc}".rstrip())
    return "\n".join(lines)


_MARKDOWN_ESCAPES = {"|": "\\|", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "<": "&lt;", ">": "&gt;"}


def _markdown_cell(text: str) -> str:
    """``text`` as literal Markdown table-cell text: a comment's ``<split>`` or ``pc_*`` stays as written,
    not an HTML tag or emphasis; code spans in backticks are kept (only their pipes are escaped)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside backticks
        parts[i] = "".join(_MARKDOWN_ESCAPES.get(c, c) for c in parts[i])
    for i in range(1, len(parts), 2):
        parts[i] = parts[i].replace("|", "\\|")
    return "`".join(parts)


def markdown_table(schema: type) -> str:
    """The docs' config reference for one command: a Markdown table of key, type, default, description."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for k in describe(schema):
        rows.append(f"| `{k.name}` | {_markdown_cell(k.type)} | `{k.default}` | {_markdown_cell(k.doc)} |")
    return "\n".join(rows)
