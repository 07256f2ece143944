"""URLs shown without their secrets: the query's values and the user-info are replaced by ``***``.

A registry URL often carries an access token (``https://host/reg.json?token=...``) or credentials
(``https://user:pass@host/...``). Such a URL may be printed in an error, written into a log, a
run's ``config.yaml`` or a checkpoint's metadata, and those files get published. Everything the
toolkit shows or records passes its URLs through :func:`redact_url` (one URL),
:func:`redact_text` (every URL inside a message) or :func:`redact_tree` (every URL in a config or
metadata tree), so the secret part never leaves the process.
The scheme, host, port, path and the query's keys stay, so the message still says where.

Example:
    >>> redact_url("https://me:pw@host:8000/reg.json?token=abc&v=2")
    'https://***@host:8000/reg.json?token=***&v=***'
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# a scheme, "://", then anything up to white space or a quote; trailing punctuation belongs to the sentence
_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]*[^\s'\"<>`.,;:)\]]")


_REFERENCE_RE = re.compile(r"\$\{[^{}]*\}")  # a config interpolation such as ${oc.env:TOKEN}: no secret itself


def _mask_query(query: str, keep_references: bool) -> str:
    parts = []
    for item in query.split("&"):
        key, sep, value = item.partition("=")
        if keep_references and sep and _REFERENCE_RE.fullmatch(value):
            parts.append(item)
        else:
            parts.append(f"{key}={MASK}" if sep else MASK)
    return "&".join(parts)


def redact_url(url: str, keep_references: bool = False) -> str:
    """``url`` with its user-info and every query value masked; a URL without either comes back unchanged.

    ``keep_references`` leaves a query value that is a whole config reference (``${oc.env:TOKEN}``)
    as it is: the reference says where the secret comes from without holding it.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: mask everything after the scheme
        scheme, sep, _ = url.partition("://")
        return f"{scheme}{sep}{MASK}" if sep else url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = _mask_query(parts.query, keep_references) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, keep_references: bool = False) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    if "://" not in text:
        return text
    return _URL_RE.sub(lambda m: redact_url(m.group(0), keep_references), text)


def redact_tree(value: Any) -> Any:
    """A copy of a JSON-like tree (dicts, lists, scalars) with :func:`redact_text` applied to every string in it."""
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v) for v in value]
    return redact_text(value) if isinstance(value, str) else value
