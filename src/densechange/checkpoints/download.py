"""Downloads into the per-user cache: resumable, hash-verified, one writer per file.

Cache layout (root: ``DENSECHANGE_CACHE``, default ``~/.cache/densechange``)::

    <root>/<entry name>/<sha256 or prefix>/<file name>     registry entries
    <root>/url/<sha256(url)[:16]>/<file name>              bare URLs

so two entries, or two versions of one, never share a path. A file reaches its final name only
after its hash has been checked (:func:`densechange.atomic.publish`: flushed, then renamed); the
bytes on their way live in ``<final>.part``, which only the holder of the file's lock
(``<root>/.locks/``, ``flock``) touches, so a later call continues it with an HTTP Range request
(also after a full disk, once there is room). A verified file gets a ``<final>.sha256`` stamp; a file
placed by hand at the final path is verified on first use. Under ``torchrun`` the local rank 0 of
each node downloads while the other ranks wait at a barrier. HTTP uses urllib only.

Example:
    >>> path = fetch_entry(get_entry("resnet18_imagenet"))
    >>> path = fetch("hf://torchgeo/resnet18_sentinel2_rgb_moco/resnet18_sentinel2_rgb_moco.pth")
    >>> path = fetch(DownloadRequest("https://example.org/enc.safetensors", sha256="..."))
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from densechange.atomic import output_error, publish
from densechange.checkpoints.entry import Entry
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.version import code_version

CACHE_ENV = "DENSECHANGE_CACHE"
CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0
LOCK_TIMEOUT = 4 * 3600.0
_OFFLINE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}
T = TypeVar("T")


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch: its URL, what it must be, and where it goes.

    Args:
        url: ``http(s)://``, ``file://`` or ``hf://org/repo[@revision]/path``.
        sha256, sha256_prefix: expected hash (or the prefix a file name publishes); a mismatch deletes
            the file and raises. Neither: any file is accepted.
        size: expected size in bytes, when published.
        dest: final path; default :func:`url_cache_path` under the cache.
        label: name on the progress bar; default the file name.
    """

    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    dest: Path | None = None
    label: str | None = None

    def accepts(self, digest: str) -> bool:
        """Whether a file of sha256 ``digest`` is the one requested."""
        if self.sha256:
            return digest == self.sha256
        return digest.startswith(self.sha256_prefix) if self.sha256_prefix else True


class _Interrupted(Exception):
    """The body stopped early; the partial file is kept for a resume."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "densechange").expanduser()


def resolve_url(url: str) -> str:
    """``hf://org/repo[@revision]/path`` -> its ``https://huggingface.co/.../resolve/...`` URL."""
    if not url.lower().startswith("hf://"):
        return url
    parts = url[len("hf://"):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise CheckpointError(f"{url!r}: Hugging Face sources look like hf://org/repo/path/to/file")
    org, repo, path = parts
    repo, _, revision = repo.partition("@")
    return f"https://huggingface.co/{org}/{repo}/resolve/{revision or 'main'}/{path}"


def _basename(url: str) -> str:
    name = unquote(Path(urlparse(url).path).name)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "download"


def entry_cache_path(entry: Entry, cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / entry.name / entry.hash_id / _basename(resolve_url(entry.url))


def url_cache_path(url: str, cache_dir: str | os.PathLike | None = None) -> Path:
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache_root(cache_dir) / "url" / key / _basename(resolve_url(url))


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout: float = LOCK_TIMEOUT, poll: float = 0.1) -> Iterator[None]:
    """Inter-process lock on ``path``: ``flock`` where available, else an ``O_EXCL`` lock file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None
    deadline = time.monotonic() + timeout
    if fcntl is not None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise CheckpointError(f"waited {timeout:.0f} s for the lock {path}; "
                                              "delete it if no download runs")
                    time.sleep(poll)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return
    marker = path.with_name(path.name + ".excl")
    while True:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise CheckpointError(f"waited {timeout:.0f} s for the lock {marker}; delete it if no download runs")
            time.sleep(poll)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()


def _manual_hint(url: str, dest: Path) -> str:
    return (f"To install it by hand, download {url} on a machine with internet access and copy it to "
            f"{dest} (it is checked against its sha256 on first use).")


def _open_error(url: str, err: Exception, dest: Path) -> CheckpointError:
    """A clear message for a request that failed before any byte arrived."""
    host = urlparse(url).netloc or url
    if isinstance(err, urllib.error.HTTPError):
        if err.code == 404:
            return CheckpointError(f"{url} was not found (HTTP 404): check the URL or registry entry")
        return CheckpointError(f"HTTP {err.code} {err.reason} while downloading {url}. {_manual_hint(url, dest)}")
    reason = getattr(err, "reason", err)
    if isinstance(reason, FileNotFoundError):
        return CheckpointError(f"{url}: no such file")
    if isinstance(reason, ConnectionRefusedError):
        return CheckpointError(f"connection to {host} refused while downloading {url}. {_manual_hint(url, dest)}")
    offline = isinstance(reason, (socket.gaierror, socket.timeout, TimeoutError)) or (
        isinstance(reason, OSError) and reason.errno in _OFFLINE_ERRNOS)
    if offline:
        return CheckpointError(f"cannot reach {host} ({reason}): this machine looks offline. {_manual_hint(url, dest)}")
    return CheckpointError(f"download of {url} failed ({reason}). {_manual_hint(url, dest)}")


def _download(url: str, part: Path, dest: Path, *, label: str, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (Range when ``part`` has bytes; restart if ignored)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"densechange/{code_version()}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file does not fit the remote one: start over
            part.unlink()
            return _download(url, part, dest, label=label, progress=progress, timeout=timeout)
        raise _open_error(url, err, dest) from err
    except (urllib.error.URLError, OSError) as err:
        raise _open_error(url, err, dest) from err
    with response:
        start = 0
        if offset and getattr(response, "status", None) == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            start = int(match.group(1)) if match else -1
            if start != offset:
                part.unlink()
                raise _Interrupted(f"server answered Range {offset}- with {response.headers.get('Content-Range')!r}")
        length = response.headers.get("Content-Length")
        expected = start + int(length) if length and length.isdigit() else None
        received = start
        bar = tqdm(total=expected, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=label, disable=not progress, file=sys.stderr, leave=True)
        try:
            with open(part, "ab" if start else "wb") as out:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as err:  # reset, timeout, IncompleteRead
                        raise _Interrupted(f"connection lost after {received} of {expected or '?'} bytes ({err!r})")
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except OSError as err:  # the disk refused the bytes; what arrived stays in the partial file for a resume
            raise output_error(part, err) from err
        finally:
            bar.close()
    if expected is not None and received != expected:
        raise _Interrupted(f"connection closed after {received} of {expected} bytes: truncated body "
                           f"(Content-Length announced {expected}, received {received})")


def _download_resuming(remote: str, part: Path, dest: Path, *, url: str, label: str, progress: bool,
                       timeout: float, retries: int) -> None:
    """`_download`, resumed up to ``retries`` times when the connection drops."""
    for attempt in range(retries + 1):
        try:
            return _download(remote, part, dest, label=label, progress=progress, timeout=timeout)
        except _Interrupted as err:
            if attempt == retries:
                raise CheckpointError(f"download of {url} incomplete: {err}. Run again to resume.") from None


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def _cached_digest(path: Path) -> str:
    """sha256 of a cached file, re-hashed only when the file changed since it was last verified."""
    marker = _marker(path)
    with contextlib.suppress(OSError, ValueError):
        digest, stamp = marker.read_text().split(" ", 1)
        if stamp.strip() == _stamp(path):
            return digest
    digest = sha256_file(path)
    with contextlib.suppress(OSError):  # a read-only shared cache simply re-hashes next time
        marker.write_text(f"{digest} {_stamp(path)}\n")
    return digest


def _check(path: Path, digest: str, request: DownloadRequest) -> None:
    if not request.accepts(digest):
        path.unlink(missing_ok=True)
        _marker(path).unlink(missing_ok=True)
        raise CheckpointError(
            f"sha256 mismatch for {request.url}: expected {request.sha256 or request.sha256_prefix + '...'}, got "
            f"{digest}; the file was deleted. Run again to download it afresh; if it persists, the source changed."
        )


def _fetch_locked(request: DownloadRequest, lock: Path, *, progress: bool, timeout: float, retries: int,
                  refresh: bool) -> Path:
    """:func:`fetch` under the file's lock; ``request.dest`` and ``request.label`` are set."""
    url, dest, label, size = request.url, Path(request.dest), str(request.label), request.size
    remote = resolve_url(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock):
        if dest.exists() and not refresh:
            _check(dest, _cached_digest(dest), request)
            return dest
        part = dest.with_name(dest.name + ".part")
        if refresh:  # no hash to check a resumed file against: start from nothing
            part.unlink(missing_ok=True)
        try:
            _download_resuming(remote, part, dest, url=url, label=label, progress=progress,
                               timeout=timeout, retries=retries)
        except CheckpointError:
            if refresh and dest.exists():
                warnings.warn(f"could not refresh {url}; using the cached copy {dest}", stacklevel=4)
                return dest
            raise
        if size is not None and part.stat().st_size != size:
            actual = part.stat().st_size
            part.unlink()
            raise CheckpointError(f"{url}: expected {size} bytes, got {actual}; the file was deleted")
        digest = sha256_file(part)
        _check(part, digest, request)
        publish(part, dest)
        _marker(dest).write_text(f"{digest} {_stamp(dest)}\n")
    return dest


def _once_per_node(task: Callable[[bool], T], done: Callable[[], bool], label: str) -> T:
    """Run ``task(leader=True)`` on local rank 0 first while the node's other ranks wait at a barrier.

    The others then call ``task(leader=False)``, which finds the file in the cache (and never
    downloads it again).
    """
    dist = sys.modules.get("torch.distributed")  # a process group implies torch is imported
    if dist is None or not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return task(True)
    leader = int(os.environ.get("LOCAL_RANK", "0")) == 0
    error: BaseException | None = None
    result = None
    if leader:
        try:
            result = task(True)
        except Exception as err:  # re-raised after the barrier so no rank waits forever
            error = err
    dist.barrier()
    if error is not None:
        raise error
    if leader:
        return result
    if not done():
        raise CheckpointError(f"local rank 0 could not download {label}; see its error")
    return task(False)


def fetch(source: str | DownloadRequest, *, cache_dir: str | os.PathLike | None = None, progress: bool = True,
          timeout: float = DEFAULT_TIMEOUT, retries: int = 2, refresh: bool = False) -> Path:
    """Local path of a URL (``http(s)://``, ``file://``, ``hf://``) or of a :class:`DownloadRequest`, downloaded if needed.

    Args:
        source: a bare URL (any file is accepted), or a request with the expected hash, size and destination.
        cache_dir: cache root (default: ``DENSECHANGE_CACHE``, else ``~/.cache/densechange``).
        retries: automatic resumes after a connection cut, within this call.
        refresh: download again even if cached (used for registry files); on failure the cached
            copy is used with a warning.
    """
    request = DownloadRequest(source) if isinstance(source, str) else source
    target = Path(request.dest) if request.dest is not None else url_cache_path(request.url, cache_dir)
    request = replace(request, dest=target, label=request.label or target.name)
    # Lock files live apart from cached files, so a failed download leaves its folder empty.
    lock_name = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:24] + ".lock"
    lock = cache_root(cache_dir) / ".locks" / lock_name

    def task(leader: bool) -> Path:
        return _fetch_locked(request, lock, progress=progress, timeout=timeout, retries=retries,
                             refresh=refresh and leader)

    return _once_per_node(task, target.exists, request.url)


def fetch_entry(entry: Entry, *, cache_dir: str | os.PathLike | None = None, **kwargs) -> Path:
    """Local, verified path of a registry entry's file (see `fetch` for the keyword arguments)."""
    request = DownloadRequest(entry.url, sha256=entry.sha256, sha256_prefix=entry.sha256_prefix, size=entry.size,
                              dest=entry_cache_path(entry, cache_dir), label=entry.name)
    return fetch(request, **kwargs)
