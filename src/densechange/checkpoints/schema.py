"""Registry files and checkpoint metadata checked as data, before anything uses them.

A value read from a file is only trusted once a schema said what it may be: its type, its range,
a finite number, a length, a pattern. A schema is a tree of small specs (:class:`Int`,
:class:`Number`, :class:`Text`, :class:`Flag`, :class:`Items`, :class:`Record`, :class:`Json`);
:func:`validate` walks a parsed value through one and raises a single :class:`CheckpointError`
that names the file and the field (``neck.channels``, ``mean[2]``). :func:`load_json` parses the
text first within a size and a nesting bound, and refuses what is not JSON (invalid UTF-8,
``NaN``), so no input reaches a ``TypeError`` or a ``RecursionError`` deeper in the toolkit.

Example:
    >>> spec = Record({"in_chans": Int(1, 1024), "std": Items(Number(positive=True))}, required=("in_chans",))
    >>> validate(spec, {"in_chans": 3, "std": [0.2, 0.0]}, "enc.safetensors")
    Traceback (most recent call last):
    CheckpointError: enc.safetensors: std[1] must be a positive number, got 0.0
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.limits import MAX_JSON_DEPTH, MAX_TEXT


_REFERENCE = re.compile(r"\$\{[^{}]*\}")


class Invalid(Exception):
    """One field's problem, on its way up to :func:`validate`, which adds the file's name.

    The field's path is built on the way up (``within``), so a value that passes costs no strings.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message, self.parts = message, []

    def within(self, part: str | int) -> "Invalid":
        self.parts.append(part)
        return self

    @property
    def path(self) -> str:
        text = ""
        for part in reversed(self.parts):
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text

    def __str__(self) -> str:
        return f"{self.path} {self.message}" if self.parts else self.message


def _shown(value: Any) -> str:
    if isinstance(value, list):  # never repr a container: it may be nested a thousand levels deep
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"a JSON object of {len(value)} fields"
    if isinstance(value, str) and len(value) > 60:
        return repr(value[:57]) + "..."
    return repr(value)


class Spec:
    """What one value may be; :meth:`check` returns it (or raises :class:`Invalid`)."""

    def check(self, value: Any) -> Any:  # pragma: no cover - every spec overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Spec):
    """An integer (not a bool, not ``3.0``) in ``[low, high]``."""

    low: int | None = None
    high: int | None = None

    def check(self, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"must be an integer, got {_shown(value)}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise Invalid(f"must be an integer from {self.low} to {self.high}, got {_shown(value)}")
        return value


@dataclass(frozen=True)
class Number(Spec):
    """A finite number in ``[low, high]``; ``positive`` also refuses 0."""

    low: float | None = None
    high: float | None = None
    positive: bool = False

    def check(self, value: Any) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise Invalid(f"must be a number, got {_shown(value)}")
        if not math.isfinite(value):
            raise Invalid(f"must be a finite number, got {_shown(value)}")
        if self.positive and value <= 0:
            raise Invalid(f"must be a positive number, got {_shown(value)}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise Invalid(f"must be a number from {self.low} to {self.high}, got {_shown(value)}")
        return value


@dataclass(frozen=True)
class Text(Spec):
    """A string of at most ``max_len`` characters, matching ``pattern`` and among ``choices`` when given."""

    max_len: int = MAX_TEXT
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    min_len: int = 0
    hint: str = ""  # what the pattern means, for the error

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be a string, got {_shown(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise Invalid(f"must have {self.min_len} to {self.max_len} characters, got {len(value)}")
        if self.choices and value not in self.choices:
            raise Invalid(f"must be one of {list(self.choices)}, got {_shown(value)}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise Invalid(f"must be {self.hint or 'of the form ' + self.pattern}, got {_shown(value)}")
        return value


@dataclass(frozen=True)
class Flag(Spec):
    """``true`` or ``false``."""

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"must be true or false, got {_shown(value)}")
        return value


@dataclass(frozen=True)
class Items(Spec):
    """A list of ``min_len`` to ``max_len`` values, each checked by ``item``."""

    item: Spec
    min_len: int = 0
    max_len: int = 4096

    def check(self, value: Any) -> list:
        if not isinstance(value, list):
            raise Invalid(f"must be a list, got {_shown(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise Invalid(f"must have {self.min_len} to {self.max_len} items, got {len(value)}")
        check, out = self.item.check, []
        for i, v in enumerate(value):
            try:
                out.append(check(v))
            except Invalid as err:
                raise err.within(i)
        return out


@dataclass(frozen=True)
class Json(Spec):
    """Any JSON value: objects with string keys, lists, strings, finite numbers, booleans, null.

    For free-form parts (a run's config, a method's extras): only the shape is bounded, by the
    nesting depth (``depth`` levels below this one), string lengths and finite numbers.
    """

    depth: int = MAX_JSON_DEPTH

    def check(self, value: Any) -> Any:
        return _tree(value, self.depth)


def _tree(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid(f"must be a finite number, got {value!r}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise Invalid(f"is a string of {len(value)} characters (the limit is {MAX_TEXT})")
        return value
    if depth <= 0 and isinstance(value, (dict, list)):
        raise Invalid(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, list):
        out: list = []
        for i, item in enumerate(value):
            try:
                out.append(_tree(item, depth - 1))
            except Invalid as err:
                raise err.within(i)
        return out
    if not isinstance(value, dict):
        raise Invalid(f"is not a JSON value: {type(value).__name__}")
    checked = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise Invalid(f"has a key that is not a string: {_shown(key)}")
        try:
            checked[key] = _tree(item, depth - 1)
        except Invalid as err:
            raise err.within(key)
    return checked


@dataclass(frozen=True)
class Record(Spec):
    """A JSON object with the given ``fields``; ``open`` ones also take other keys (any bounded JSON).

    ``nullable`` fields may hold ``null`` (read as absent); ``forbidden`` keys are refused even in an
    open record, with ``forbidden_why`` as the reason. With ``references``, a field that holds a whole
    config reference (``${oc.env:NAME}``: what a recorded config keeps of a value from the
    environment) is left out, as unknown, whatever its spec.
    """

    fields: Mapping[str, Spec]
    required: tuple[str, ...] = ()
    open: bool = False
    nullable: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    forbidden_why: str = ""
    depth: int = MAX_JSON_DEPTH
    references: bool = False

    def check(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise Invalid(f"must be a JSON object, got {_shown(value)}")
        missing = [k for k in self.required if k not in value]
        if missing:
            raise Invalid(f"lacks the field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        bad = sorted(str(k) for k in self.forbidden if k in value)
        if bad:
            raise Invalid(f"may not set {', '.join(bad)}{': ' + self.forbidden_why if self.forbidden_why else ''}")
        if not self.open:
            unknown = sorted(str(k)[:40] for k in value.keys() - self.fields.keys())
            if unknown:
                shown = ", ".join(unknown[:10]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 10 else "")
                raise Invalid(f"has unknown field{'s' if len(unknown) > 1 else ''} {shown}; "
                              f"known: {', '.join(sorted(self.fields))}")
        out, fields = {}, self.fields
        for key, item in value.items():
            try:
                if item is None and key in self.nullable:
                    out[key] = None
                elif self.references and isinstance(item, str) and _REFERENCE.fullmatch(item):
                    continue
                elif key in fields:
                    out[key] = fields[key].check(item)
                elif not isinstance(key, str):
                    raise Invalid(f"has a key that is not a string: {_shown(key)}")
                else:
                    out[key] = _tree(item, self.depth - 1)
            except Invalid as err:
                raise err.within(key) if isinstance(key, str) else err
        return out


def validate(spec: Spec, value: Any, where: str) -> Any:
    """``value`` checked by ``spec``; the first problem is one :class:`CheckpointError` naming ``where`` and the field."""
    try:
        return spec.check(value)
    except Invalid as err:
        raise CheckpointError(f"{where}: {err}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(data: bytes | str, where: str, *, max_bytes: int, raise_hint: str = "") -> Any:
    """Parsed JSON of ``data``, within ``max_bytes``; any other input is a :class:`CheckpointError`.

    Invalid UTF-8, ``NaN``/``Infinity``, integers too long to read, and nesting too deep for the
    parser all come out as one message naming ``where``. The schema that checks the value next
    bounds its depth (:class:`Json` and :class:`Record` stop at ``MAX_JSON_DEPTH`` levels).
    """
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > max_bytes:
        raise CheckpointError(f"{where} is {size:,} bytes, more than the {max_bytes:,} accepted{raise_hint}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CheckpointError(f"{where} is not UTF-8 text (byte {err.start}: {err.reason})") from None
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise CheckpointError(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, NaN, integers past Python's digit limit
        raise CheckpointError(f"{where} is not valid JSON: {err}") from None
    return value


__all__ = ["Flag", "Int", "Invalid", "Items", "Json", "Number", "Record", "Spec", "Text",
           "load_json", "validate"]
