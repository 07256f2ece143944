"""The one checkpoint format of the toolkit: safetensors tensors plus a JSON metadata header.

Every file the toolkit writes (encoders, change models, training state) goes through
:func:`save_file`, so every file carries the same header: the caller's metadata as JSON under the
``densechange`` key, the format version and the code version. Loading never unpickles: only
safetensors is read here; foreign pickled weights go through :mod:`densechange.checkpoints.importers`.

Two digests guard a file. ``tensor_digest`` covers the tensors; ``metadata_digest`` covers every
other header entry (the metadata, the versions and the tensor digest), so a file whose metadata
was edited after it was written (a std set to zero, another backbone) is refused unless the
caller passes ``trust_edited=True``, and then loads with a warning. The digests are unkeyed: they
catch edits and corruption, not a forger who recomputes them, which is why the metadata is also
checked as data on every read (:mod:`densechange.checkpoints.metadata`). Files written before the
metadata digest existed carry none: they load, checked as data, with a note that an edit cannot be
detected.

Example:
    >>> save_file("enc.safetensors", model.state_dict(), {"kind": "encoder", "backbone": "resnet18"})
    >>> tensors, meta = load_file("enc.safetensors")
    >>> meta["format_version"], meta["kind"]
    (1, 'encoder')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file as _st_save_file

from densechange.atomic import write_atomically
from densechange.checkpoints.errors import CheckpointError
from densechange.checkpoints.limits import METADATA_MAX_BYTES
from densechange.checkpoints.metadata import KINDS, check_metadata
from densechange.checkpoints.schema import load_json
from densechange.checkpoints.version import code_version

FORMAT_VERSION = 1
META_KEY = "densechange"
DIGEST_KEY = "tensor_digest"  # BLAKE2b of the tensor data, checked on every load_file
META_DIGEST_KEY = "metadata_digest"  # BLAKE2b of every other header entry, checked on every read
# Header keys written next to the caller's metadata; `read_metadata` folds them back into the dict.
RESERVED_KEYS = ("format_version", "code_version")

PathLike = str | os.PathLike
__all__ = [
    "FORMAT_VERSION", "KINDS", "CheckpointError", "code_version", "extra_metadata", "is_densechange_file",
    "load_file", "looks_like_safetensors", "metadata_status", "read_metadata", "read_tensor", "save_file",
    "trust_edited_files",
]


def extra_metadata(extra: dict[str, Any] | None, recorded: Sequence[str]) -> dict[str, Any]:
    """A copy of a caller's ``extra`` metadata, which may not shadow the ``recorded`` fields a loader rebuilds from."""
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(recorded))
    if clash:
        raise CheckpointError(f"extra metadata may not redefine {clash}")
    return extra


def _prepare_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors, with storage shared between entries cloned apart.

    safetensors refuses tensors that share memory (tied weights, views of one buffer); saving each
    as its own copy keeps the file self-describing at the cost of a little disk.
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[str, int]] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str):
            raise CheckpointError(f"tensor names must be strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"value for {name!r} is a {type(tensor).__name__}, not a tensor; "
                "put non-tensor values in the metadata instead"
            )
        t = tensor.detach()
        storage = (str(t.device), t.untyped_storage().data_ptr())
        if storage in seen and t.numel() > 0:
            t = t.clone()
        else:
            seen.add(storage)
        out[name] = t.contiguous().cpu()
    return out


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """BLAKE2b of every tensor's name, dtype, shape and bytes, in name order.

    safetensors checks the file's structure but not its data, so a flipped bit inside a weight
    would load silently; the digest stored in the header catches it.
    """
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach()
        if t.device.type != "cpu":
            t = t.cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _header(meta: dict[str, Any], path: PathLike = "checkpoint") -> dict[str, str]:
    kind = meta.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"meta['kind'] must be one of {list(KINDS)}, got {kind!r}")
    user_meta = {k: v for k, v in meta.items() if k not in RESERVED_KEYS}
    try:
        payload = json.dumps(user_meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint metadata is not JSON-serialisable: {err}") from err
    check_metadata(json.loads(payload), f"cannot write {path}")  # never write what reading would refuse
    return {
        META_KEY: payload,
        "format_version": str(FORMAT_VERSION),
        "code_version": code_version(),
    }


def metadata_digest(header: dict[str, str]) -> str:
    """BLAKE2b of every header entry but the metadata digest itself, in key order."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(k for k in header if k != META_DIGEST_KEY):
        value = header[key]
        h.update(f"{len(key)}:{key}={len(value)}:".encode())
        h.update(value.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _serialise(tensors: dict[str, torch.Tensor], header: dict[str, str]) -> Callable[[Path], None]:
    """Writer of the safetensors file; the disk's refusals come out as ``OSError`` with their errno."""

    def write(tmp: Path) -> None:
        try:
            _st_save_file(tensors, str(tmp), metadata=header)
        except SafetensorError as err:  # safetensors reports I/O failures as "... (os error N)"
            found = re.search(r"I/O error.*\(os error (\d+)\)", str(err))
            if found is None:
                raise
            code = int(found.group(1))
            raise OSError(code, os.strerror(code)) from err

    return write


def save_file(path: PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write ``tensors`` and ``meta`` to ``path`` atomically.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed over
    ``path`` (:func:`densechange.atomic.write_atomically`): a crash at any point leaves either the
    previous file or the new one, never a torn one. A disk that refuses the write raises
    :class:`densechange.atomic.OutputError`.

    Args:
        path: destination, conventionally ``*.safetensors``.
        tensors: name -> tensor; made contiguous and moved to CPU.
        meta: JSON-serialisable dict with ``kind`` in ``KINDS``.
    """
    header = _header(meta, path)
    prepared = _prepare_tensors(tensors)
    header[DIGEST_KEY] = tensor_digest(prepared)
    header[META_DIGEST_KEY] = metadata_digest(header)
    write_atomically(Path(path), _serialise(prepared, header))


def _open(path: PathLike, device: str = "cpu"):
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        return safe_open(str(path), framework="pt", device=device)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {err}. "
            "Delete it and save or download it again."
        ) from err


def metadata_status(header: dict[str, str] | None) -> str:
    """``"intact"`` (the digest matches), ``"edited"`` (it does not) or ``"unchecked"`` (a file without one)."""
    header = header or {}
    recorded = header.get(META_DIGEST_KEY)
    if recorded is None:
        return "unchecked"
    return "intact" if recorded == metadata_digest(header) else "edited"


_NOTED: set[str] = set()
_TRUST_EDITED = False


@contextlib.contextmanager
def trust_edited_files(trust: bool) -> Iterator[None]:
    """Within the block, whether checkpoints whose metadata was edited load, where a caller does not say.

    A command enters it with its ``trust_edited`` key around all it does, so the key reaches every
    file the command loads (``model.init``, ``model.encoder``, ``trainer.resume``, the checkpoint an
    export reads): this module alone decides, whatever the path to the load.
    """
    global _TRUST_EDITED
    before, _TRUST_EDITED = _TRUST_EDITED, bool(trust)
    try:
        yield
    finally:
        _TRUST_EDITED = before


def _check_digest(path: PathLike, header: dict[str, str], trust_edited: bool | None) -> None:
    status = metadata_status(header)
    trust_edited = _TRUST_EDITED if trust_edited is None else trust_edited
    if status == "edited" and not trust_edited:
        raise CheckpointError(
            f"{path}: its metadata was changed after the file was written (the metadata digest does not match), so "
            "the architecture and normalisation it records cannot be trusted. Use the file as it was written, or pass "
            "trust_edited=true to load it anyway.")
    if status == "edited":
        warnings.warn(f"{path}: its metadata was edited after the file was written; loading it because trust_edited "
                      "is set (the metadata is still checked as data)", stacklevel=4)
    elif status == "unchecked" and str(path) not in _NOTED:
        _NOTED.add(str(path))
        warnings.warn(f"{path} was written before checkpoints carried a metadata digest: its metadata is checked as "
                      "data, but an edit to it cannot be detected", stacklevel=4)


def _parse_header(path: PathLike, header: dict[str, str] | None, trust_edited: bool | None = None) -> dict[str, Any]:
    header = header or {}
    if META_KEY not in header:
        raise CheckpointError(
            f"{path} is a safetensors file but not a densechange checkpoint (no '{META_KEY}' "
            "metadata); import foreign weights with `densechange weights convert`"
        )
    version_text = header.get("format_version", "0")
    if not re.fullmatch(r"\d{1,5}", version_text):
        raise CheckpointError(f"{path} has a corrupt densechange metadata header: format_version {version_text[:20]!r}")
    version = int(version_text)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, newer than the {FORMAT_VERSION} this "
            "densechange understands; upgrade densechange to read it"
        )
    meta = load_json(header[META_KEY], f"{path}: the densechange metadata", max_bytes=METADATA_MAX_BYTES)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: densechange metadata must be a JSON object")
    _check_digest(path, header, trust_edited)
    meta["format_version"] = version
    meta["code_version"] = header.get("code_version", "unknown")
    return check_metadata(meta, str(path))


def looks_like_safetensors(path: PathLike) -> bool:
    """A safetensors file starts with an 8-byte header length followed by a JSON object."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def is_densechange_file(path: PathLike) -> bool:
    """Whether ``path`` is a safetensors file with our header (False for foreign safetensors)."""
    with _open(path) as f:
        return META_KEY in (f.metadata() or {})


def read_metadata(path: PathLike, trust_edited: bool | None = None) -> dict[str, Any]:
    """The checked metadata of a checkpoint, with ``format_version`` and ``code_version`` filled in.

    Args:
        trust_edited: accept metadata changed since the file was written (with a warning) instead of refusing it;
            None: as the process was told (:func:`trust_edited_files`, off unless a command's key set it).
    """
    with _open(path) as f:
        return _parse_header(path, f.metadata(), trust_edited)


def read_header(path: PathLike) -> dict[str, str]:
    """The raw safetensors header strings of a file (for reports such as ``weights inspect``)."""
    with _open(path) as f:
        return dict(f.metadata() or {})


def load_file(path: PathLike, device: str | torch.device = "cpu",
              trust_edited: bool | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read every tensor of a checkpoint onto ``device`` and its metadata (see `read_metadata`)."""
    with _open(path, str(device)) as f:
        meta = _parse_header(path, f.metadata(), trust_edited)
        try:
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path}: could not read tensor data (corrupt file?): {err}") from err
        expected = (f.metadata() or {}).get(DIGEST_KEY)
    if expected is not None and tensor_digest(tensors) != expected:
        raise CheckpointError(f"{path}: the tensor data does not match the digest stored when it was written, so the "
                              "file is corrupt. Use an intact copy (for a run, an older checkpoint) or save it again.")
    return tensors, meta


def read_tensor(path: PathLike, name: str) -> torch.Tensor:
    """One tensor of a checkpoint, read without loading the others (memory-mapped).

    For files read piece by piece (pseudo-masks, one image at a time); the whole-file digest is
    checked by `load_file`, not here.
    """
    with _open(path) as f:
        try:
            return f.get_tensor(name)
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{path}: could not read tensor '{name}' (corrupt file?): {err}") from err
