"""One HTTP(S) or ``file://`` body into a partial file, within bounds, resumed only when provably the same file.

:mod:`densechange.checkpoints.download` decides what to fetch, where it goes and whether it is
right; this module moves the bytes, and refuses what a broken or hostile server may send:

- a body longer than the declared size plus :data:`~densechange.checkpoints.limits.SIZE_MARGIN`
  (or, with no declared size, longer than the caller's bound) is stopped and its partial file
  deleted, before it is written past the bound;
- every read waits at most the read timeout, and the whole transfer at most its deadline, so a
  server that sends a byte a second cannot hold a run forever;
- redirects are followed only to ``http://`` and ``https://`` (never ``ftp://`` or ``file://``);
- a partial file is continued (``Range``) only under the validator the server gave for it (a strong
  ``ETag``, else ``Last-Modified``) sent as ``If-Range``: a file that changed between a dropped
  connection and the resume comes back whole (HTTP 200) and replaces the partial one, so two
  versions are never spliced. Without a validator the download starts again from the first byte.

The validator lives beside the partial file, in ``<final>.part.validator``. URLs appear in messages
with their query and user-info masked (:func:`densechange.redact.redact_url`).
"""
from __future__ import annotations

import errno
import http.client
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tqdm import tqdm

from densechange.atomic import output_error
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.limits import DEADLINE_ENV, TIMEOUT_ENV
from densechange.checkpoints.version import code_version
from densechange.redact import redact_url

CHUNK = 1 << 20
REDIRECT_SCHEMES = ("http", "https")
_OFFLINE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}


class Interrupted(Exception):
    """The body stopped early; the partial file is kept for a resume (when it has a validator)."""


@dataclass(frozen=True)
class Bounds:
    """What one download may take: bytes, seconds per read, and the moment it must be done by."""

    max_bytes: int
    read_timeout: float
    deadline_s: float
    deadline_at: float  # time.monotonic() value
    why_max: str  # the end of the message when ``max_bytes`` is passed: the declared size, or the key that raises it

    def socket_timeout(self) -> float:
        """The wait for the next read: the read timeout, cut short by the deadline."""
        return max(0.05, min(self.read_timeout, self.deadline_at - time.monotonic()))

    def past_deadline(self) -> bool:
        return time.monotonic() >= self.deadline_at


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, but only to http(s): its own rule also lets ``ftp://`` through."""

    def _check(self, req: urllib.request.Request, fp, headers) -> None:
        target = headers.get("location") or headers.get("uri")
        if target is None:
            return
        target = urljoin(req.full_url, target)
        if urlsplit(target).scheme.lower() not in REDIRECT_SCHEMES:
            fp.close()
            raise CheckpointError(f"{redact_url(req.full_url)} redirects to {redact_url(target)}; only redirects to "
                                  "http:// and https:// are followed")

    def http_error_302(self, req, fp, code, msg, headers):
        self._check(req, fp, headers)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)


def urlopen(request: urllib.request.Request, timeout: float):
    """Open ``request`` with the toolkit's opener (http(s)-only redirects)."""
    return _OPENER.open(request, timeout=timeout)


def validator_of(headers) -> str | None:
    """The ``If-Range`` value that proves a later response is the same file: a strong ETag, else Last-Modified."""
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):  # weak validators may not be used with If-Range (RFC 9110)
        return etag
    modified = (headers.get("Last-Modified") or "").strip()
    return modified or None


def validator_path(part: Path) -> Path:
    return part.with_name(part.name + ".validator")


def forget(part: Path) -> None:
    """Delete a partial file and its validator."""
    part.unlink(missing_ok=True)
    validator_path(part).unlink(missing_ok=True)


def _stored_validator(part: Path) -> str | None:
    try:
        text = validator_path(part).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def _manual_hint(url: str, dest: Path) -> str:
    return (f"To install it by hand, download {url} on a machine with internet access and copy it to "
            f"{dest} (it is checked against its sha256 on first use).")


def open_error(url: str, err: Exception, dest: Path, timeout: float) -> CheckpointError:
    """A clear message for a request that failed before any byte arrived."""
    shown = redact_url(url)
    host = urlsplit(shown).netloc or shown
    if isinstance(err, urllib.error.HTTPError):
        if err.code == 404:
            return CheckpointError(f"{shown} was not found (HTTP 404): check the URL or registry entry")
        return CheckpointError(f"HTTP {err.code} {err.reason} while downloading {shown}. {_manual_hint(shown, dest)}")
    reason = getattr(err, "reason", err)
    if isinstance(reason, FileNotFoundError):
        return CheckpointError(f"{shown}: no such file")
    if isinstance(reason, ConnectionRefusedError):
        return CheckpointError(f"connection to {host} refused while downloading {shown}. {_manual_hint(shown, dest)}")
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return CheckpointError(f"no answer from {host} within {timeout:.3g} s while downloading {shown} (raise "
                               f"{TIMEOUT_ENV} for a slow server). {_manual_hint(shown, dest)}")
    offline = isinstance(reason, socket.gaierror) or (
        isinstance(reason, OSError) and reason.errno in _OFFLINE_ERRNOS)
    if offline:
        return CheckpointError(f"cannot reach {host} ({reason}): this machine looks offline. {_manual_hint(shown, dest)}")
    return CheckpointError(f"download of {shown} failed ({reason}). {_manual_hint(shown, dest)}")


def _too_long(url: str, part: Path, bounds: Bounds) -> CheckpointError:
    forget(part)
    return CheckpointError(f"{redact_url(url)} sends more than {bounds.max_bytes:,} bytes, {bounds.why_max}; the "
                           "download was stopped and its partial file deleted")


def _late(url: str, received: int, bounds: Bounds) -> CheckpointError:
    return CheckpointError(f"download of {redact_url(url)} did not finish within its deadline of "
                           f"{bounds.deadline_s:.3g} s ({received:,} bytes arrived); run again to resume it, or raise "
                           f"{DEADLINE_ENV} for a slow link")


def transfer(remote: str, part: Path, dest: Path, *, label: str, progress: bool, bounds: Bounds,
             _again: bool = True) -> None:
    """Append the rest of ``remote`` to ``part``: a validated ``Range`` when ``part`` has bytes, else from the start."""
    stored = _stored_validator(part)
    offset = part.stat().st_size if part.exists() else 0
    if offset and stored is None:  # nothing proves the remote file is still the one these bytes came from
        forget(part)
        offset = 0
    headers = {"User-Agent": f"densechange/{code_version()}"}
    if offset:
        headers.update({"Range": f"bytes={offset}-", "If-Range": stored})
    if bounds.past_deadline():
        raise _late(remote, offset, bounds)
    try:
        response = urlopen(urllib.request.Request(remote, headers=headers), timeout=bounds.socket_timeout())
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset and _again:  # the partial file does not fit the remote one: start over
            forget(part)
            return transfer(remote, part, dest, label=label, progress=progress, bounds=bounds, _again=False)
        raise open_error(remote, err, dest, bounds.read_timeout) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        if bounds.past_deadline():
            raise _late(remote, offset, bounds) from None
        raise open_error(remote, err, dest, bounds.read_timeout) from err
    with response:
        _receive(response, remote, part, offset, stored, label=label, progress=progress, bounds=bounds)


def _receive(response, remote: str, part: Path, offset: int, stored: str | None, *, label: str, progress: bool,
             bounds: Bounds) -> None:
    start, current = 0, validator_of(response.headers)
    if offset and getattr(response, "status", None) == 206:
        match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if (int(match.group(1)) if match else -1) != offset:
            forget(part)
            raise Interrupted(f"server answered Range {offset}- with {response.headers.get('Content-Range')!r}")
        if current is not None and current != stored:  # a server that honours Range but not If-Range
            forget(part)
            raise Interrupted("the file changed on the server since the partial download began")
        start = offset
    length = response.headers.get("Content-Length")
    expected = start + int(length) if length and length.isdigit() else None
    if expected is not None and expected > bounds.max_bytes:
        raise _too_long(remote, part, bounds)
    if start == 0:
        forget(part)
        if current is not None:
            validator_path(part).write_text(current + "\n", encoding="utf-8")
    read = getattr(response, "read1", None) or response.read
    received = start
    bar = tqdm(total=expected, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
               desc=label, disable=not progress, file=sys.stderr, leave=True)
    try:
        with open(part, "ab" if start else "wb") as out:
            while True:
                try:
                    chunk = read(CHUNK)
                except (socket.timeout, TimeoutError) as err:
                    if bounds.past_deadline():
                        raise _late(remote, received, bounds) from None
                    raise Interrupted(f"no byte arrived for {bounds.read_timeout:.3g} s after {received} of "
                                      f"{expected or '?'} bytes (read timeout; raise {TIMEOUT_ENV} for a slow server)"
                                      ) from err
                except (OSError, ValueError, http.client.HTTPException) as err:  # reset, IncompleteRead
                    raise Interrupted(f"connection lost after {received} of {expected or '?'} bytes ({err!r})")
                if not chunk:
                    break
                if received + len(chunk) > bounds.max_bytes:
                    out.close()
                    raise _too_long(remote, part, bounds)
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                if bounds.past_deadline():
                    raise _late(remote, received, bounds)
    except OSError as err:  # the disk refused the bytes; what arrived stays in the partial file for a resume
        raise output_error(part, err) from err
    finally:
        bar.close()
    if expected is not None and received != expected:
        raise Interrupted(f"connection closed after {received} of {expected} bytes: truncated body "
                          f"(Content-Length announced {expected}, received {received})")


def transfer_resuming(remote: str, part: Path, dest: Path, *, url: str, label: str, progress: bool, bounds: Bounds,
                      retries: int) -> None:
    """`transfer`, resumed up to ``retries`` times when the connection drops."""
    for attempt in range(retries + 1):
        try:
            return transfer(remote, part, dest, label=label, progress=progress, bounds=bounds)
        except Interrupted as err:
            if attempt == retries:
                raise CheckpointError(f"download of {redact_url(url)} incomplete: {err}. Run again to resume.") from None
