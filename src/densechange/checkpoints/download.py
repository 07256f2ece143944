"""Downloads into the per-user cache: resumable, hash-verified, one writer per file.

Cache layout (root: ``DENSECHANGE_CACHE``, default ``~/.cache/densechange``)::

    <root>/<entry name>/<sha256 or prefix>/<file name>     registry entries
    <root>/url/<sha256(url)[:16]>/<file name>              bare URLs

so two entries, or two versions of one, never share a path. A file reaches its final name only
after its hash has been checked (:func:`densechange.atomic.publish`: flushed, then renamed); the
bytes on their way live in ``<final>.part``, which only the holder of the file's lock
(``<root>/.locks/``, ``flock``) touches, so a later call continues it with an HTTP Range request
(also after a full disk, once there is room) when the server gave a validator to resume under
(:mod:`densechange.checkpoints.transfer`, which also bounds every body's size and time). A cached file
is written afresh with mode 0644 (less the umask), whatever the source's mode. A verified file gets
a ``<final>.sha256`` stamp; a file placed by hand at the final path is verified on first use. Under
``torchrun`` the local rank 0 of each node downloads while the other ranks wait at a barrier. HTTP
uses urllib only.

Example:
    >>> path = fetch_entry(get_entry("resnet18_imagenet"))
    >>> path = fetch("hf://torchgeo/resnet18_sentinel2_rgb_moco/resnet18_sentinel2_rgb_moco.pth")
    >>> path = fetch(DownloadRequest("https://example.org/enc.safetensors", sha256="..."))
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, TypeVar
from urllib.parse import unquote, urlparse

from densechange.atomic import new_file_mode, publish
from densechange.checkpoints import limits
from densechange.checkpoints.entry import Entry
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.transfer import CHUNK, Bounds, forget, transfer_resuming, validator_path
from densechange.redact import redact_url

CACHE_ENV = "DENSECHANGE_CACHE"
LOCK_TIMEOUT = 4 * 3600.0
SCHEMES = ("http", "https", "file")  # after hf:// is resolved
CACHED_MODE = 0o644  # cached files: read by all, written by their owner (less what the umask removes)
T = TypeVar("T")


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch: its URL, what it must be, and where it goes.

    Args:
        url: ``http(s)://``, ``file://`` or ``hf://org/repo[@revision]/path``.
        sha256, sha256_prefix: expected hash (or the prefix a file name publishes); a mismatch deletes
            the file and raises. Neither: any file is accepted.
        size: expected size in bytes, when published; a body longer than it (plus a small margin) is stopped.
        dest: final path; default :func:`url_cache_path` under the cache.
        label: name on the progress bar; default the file name.
        max_bytes: bound on a body of undeclared size (default ``DENSECHANGE_DOWNLOAD_MAX_BYTES``);
            ``max_bytes_key`` names what raises it, for the error.
    """

    url: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    dest: Path | None = None
    label: str | None = None
    max_bytes: int | None = None
    max_bytes_key: str = ""

    def accepts(self, digest: str) -> bool:
        """Whether a file of sha256 ``digest`` is the one requested."""
        if self.sha256:
            return digest == self.sha256
        return digest.startswith(self.sha256_prefix) if self.sha256_prefix else True


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "densechange").expanduser()


def resolve_url(url: str) -> str:
    """``hf://org/repo[@revision]/path`` -> its ``https://huggingface.co/.../resolve/...`` URL."""
    if not url.lower().startswith("hf://"):
        return url
    parts = url[len("hf://"):].split("/", 2)
    if len(parts) < 3 or not all(parts):
        raise CheckpointError(f"{redact_url(url)!r}: Hugging Face sources look like hf://org/repo/path/to/file")
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
        _write_marker(path, digest)
    return digest


def _check(path: Path, digest: str, request: DownloadRequest) -> None:
    if not request.accepts(digest):
        path.unlink(missing_ok=True)
        _marker(path).unlink(missing_ok=True)
        validator_path(path).unlink(missing_ok=True)
        raise CheckpointError(
            f"sha256 mismatch for {redact_url(request.url)}: expected {request.sha256 or request.sha256_prefix + '...'}, got "
            f"{digest}; the file was deleted. Run again to download it afresh; if it persists, the source changed."
        )


def _bounds(request: DownloadRequest, timeout: float | None, deadline: float | None) -> Bounds:
    """The bytes and seconds ``request`` may take, starting now."""
    if request.size is not None:
        top, why = request.size + limits.SIZE_MARGIN, f"though its size is declared as {request.size:,}"
    elif request.max_bytes is not None:
        top = request.max_bytes
        why = "the most accepted for this file" + (f" (raise {request.max_bytes_key} to allow more)"
                                                   if request.max_bytes_key else "")
    else:
        top = limits.max_download_bytes()
        why = f"the most accepted for a file of undeclared size (raise {limits.MAX_BYTES_ENV} to allow more)"
    span = limits.deadline(deadline)
    return Bounds(max_bytes=top, read_timeout=limits.read_timeout(timeout), deadline_s=span,
                  deadline_at=time.monotonic() + span, why_max=why)


def _write_marker(path: Path, digest: str) -> None:
    marker = _marker(path)
    marker.write_text(f"{digest} {_stamp(path)}\n")
    os.chmod(marker, new_file_mode(CACHED_MODE))


def _fetch_locked(request: DownloadRequest, lock: Path, *, progress: bool, timeout: float | None,
                  deadline: float | None, retries: int, refresh: bool) -> Path:
    """:func:`fetch` under the file's lock; ``request.dest`` and ``request.label`` are set."""
    url, dest, label, size = request.url, Path(request.dest), str(request.label), request.size
    remote = resolve_url(url)
    scheme = urlparse(remote).scheme.lower()
    if scheme not in SCHEMES:
        raise CheckpointError(f"{redact_url(url)}: downloads are http://, https://, file:// or hf:// URLs, not {scheme}://")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock):
        if dest.exists() and not refresh:
            _check(dest, _cached_digest(dest), request)
            return dest
        part = dest.with_name(dest.name + ".part")
        if refresh:  # no hash to check a resumed file against: start from nothing
            forget(part)
        try:
            transfer_resuming(remote, part, dest, url=url, label=label, progress=progress,
                              bounds=_bounds(request, timeout, deadline), retries=retries)
        except CheckpointError:
            if refresh and dest.exists():
                warnings.warn(f"could not refresh {redact_url(url)}; using the cached copy {dest}", stacklevel=4)
                return dest
            raise
        if size is not None and part.stat().st_size != size:
            actual = part.stat().st_size
            forget(part)
            raise CheckpointError(f"{redact_url(url)}: expected {size} bytes, got {actual}; the file was deleted")
        digest = sha256_file(part)
        _check(part, digest, request)
        publish(part, dest, mode=CACHED_MODE)
        validator_path(part).unlink(missing_ok=True)
        _write_marker(dest, digest)
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
          timeout: float | None = None, deadline: float | None = None, retries: int = 2, refresh: bool = False) -> Path:
    """Local path of a URL (``http(s)://``, ``file://``, ``hf://``) or of a :class:`DownloadRequest`, downloaded if needed.

    Args:
        source: a bare URL (any file is accepted), or a request with the expected hash, size and destination.
        cache_dir: cache root (default: ``DENSECHANGE_CACHE``, else ``~/.cache/densechange``).
        timeout: seconds to wait for the next byte (default ``DENSECHANGE_DOWNLOAD_TIMEOUT``, else 30).
        deadline: seconds the whole download may take, resumes included (default
            ``DENSECHANGE_DOWNLOAD_DEADLINE``, else 3600); a partial file is kept for the next call.
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
        return _fetch_locked(request, lock, progress=progress, timeout=timeout, deadline=deadline, retries=retries,
                             refresh=refresh and leader)

    return _once_per_node(task, target.exists, redact_url(request.url))


def fetch_entry(entry: Entry, *, cache_dir: str | os.PathLike | None = None, **kwargs) -> Path:
    """Local, verified path of a registry entry's file (see `fetch` for the keyword arguments)."""
    request = DownloadRequest(entry.url, sha256=entry.sha256, sha256_prefix=entry.sha256_prefix, size=entry.size,
                              dest=entry_cache_path(entry, cache_dir), label=entry.name)
    return fetch(request, **kwargs)
