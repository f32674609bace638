"""The model cache on disk: where each entry's files live, their sha256 records, their safetensors copies.

Each entry has its own folder, ``registry.cache_dir() / NAME`` (:func:`entry_dir`), so two entries whose
URLs end in the same file name never share a file. For an entry whose ``file`` is ``F.pth``:

- ``F.pth``: the verified file as published; ``F.pth.part``: an unfinished transfer, resumed next time;
- ``F.pth.sha256``: for unpinned entries, the hash of the first completed download that is a loadable
  checkpoint (``sha256sum`` format), checked on every later use;
- ``F.safetensors``: the weights ``checkpoint.read_state_dict`` takes from ``F.pth``, written after
  verification; its metadata names the sha256 of the file it was made from, and ``F.safetensors.sha256``
  records its own sha256, checked before every load (a copy that does not match is rebuilt);
- ``.locks/*.lock``, in the entry's folder: held (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on
  Windows) while a process downloads or converts, so that concurrent processes wait for the first one
  instead of downloading again. The OS drops a lock when its holder dies, so a crashed process never
  blocks the next one.

An ``hf://`` entry's file lives in the Hub's own cache (:mod:`swinir_cli.hub`); its record and copy in
the entry's folder. Earlier versions kept every entry's files directly in the cache folder
(:func:`adopt_legacy`). Every file is written whole to a temporary name, synced and renamed
(:mod:`swinir_cli.durable`), with the permission bits of the downloaded file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open

from .download_events import DownloadObserver, DownloadWaiting
from .durable import write_file_atomically
from .errors import DownloadError
from .hub import hub_cached_file, is_hub
from .provenance import ContentId
from .reading import read_regular
from .registry import ModelEntry, cache_dir

__all__ = [
    "RECORD_MAX_BYTES",
    "SOURCE_SHA256_KEY",
    "adopt_legacy",
    "cached_path",
    "copy_record_path",
    "discard",
    "discard_copy",
    "entry_dir",
    "exclusive_lock",
    "expected_sha256",
    "read_copy_record",
    "record_path",
    "record_sha256",
    "safetensors_copy",
    "safetensors_path",
    "sha256_of",
    "storage_errors",
]

SOURCE_SHA256_KEY = "source_sha256"
_SHA256_RECORD = re.compile(r"([0-9a-fA-F]{64})(?:\s.*)?", re.DOTALL)
#: Longest hash record read: 64 hex digits, two spaces, a file name (at most 255 bytes) and a newline fit.
RECORD_MAX_BYTES = 4096


def entry_dir(entry: ModelEntry) -> Path:
    """The entry's own folder in the cache: ``cache_dir() / NAME`` (names are plain, lowercase)."""
    return cache_dir() / entry.name


def cached_path(entry: ModelEntry) -> Path:
    """Where the entry's verified file lives once fetched (for ``hf://`` sources: the Hub's own cache)."""
    found = hub_cached_file(entry) if is_hub(entry) else None
    return found if found is not None else entry_dir(entry) / entry.file


def safetensors_path(entry: ModelEntry) -> Path:
    """Where the entry's safetensors copy lives (the file itself when it is already safetensors)."""
    return entry_dir(entry) / (Path(entry.file).stem + ".safetensors")


def record_path(entry: ModelEntry) -> Path:
    """Where the sha256 of an unpinned entry's first download is recorded: ``F.sha256`` in its folder."""
    return entry_dir(entry) / (entry.file + ".sha256")


def copy_record_path(copy: Path) -> Path:
    """Where a safetensors copy's own sha256 is recorded: beside it, with ``.sha256`` added."""
    return copy.with_name(copy.name + ".sha256")


def expected_sha256(entry: ModelEntry) -> str | None:
    """The pinned sha256, else the one recorded at the first download, else ``None``.

    Raises:
        DownloadError: the record file is unreadable or is not a sha256 record.
    """
    if entry.sha256 is not None:
        return entry.sha256
    return _read_record(record_path(entry), entry)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a regular file, read in 1 MiB chunks (:meth:`ContentId.of_file`)."""
    return ContentId.of_file(path).sha256


def _read_record(record: Path, entry: ModelEntry) -> str | None:
    """The sha256 a record file holds, ``None`` when there is none.

    Raises:
        DownloadError: the record cannot be read or is not ``<64 hex digits>  NAME`` (ASCII).
    """
    try:
        data = read_regular(record, RECORD_MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DownloadError(
            f"model '{entry.name}': cannot read the recorded hash {record}: {err.strerror}"
        ) from err
    try:
        match = _SHA256_RECORD.fullmatch(data.decode("ascii").strip())
    except UnicodeDecodeError:
        match = None
    if match is None:
        raise DownloadError(
            f"model '{entry.name}': {record} is not a sha256 record (expected 64 hexadecimal digits, "
            "ASCII); delete it to download the model and record its hash again"
        )
    return match[1].lower()


def read_copy_record(copy: Path) -> str | None:
    """The recorded sha256 of a safetensors copy; ``None`` when missing or malformed (the copy is
    derived data: it is then rebuilt, never trusted)."""
    try:
        record = read_regular(copy_record_path(copy), RECORD_MAX_BYTES)
        match = _SHA256_RECORD.fullmatch(record.decode("ascii").strip())
    except (OSError, UnicodeDecodeError):
        return None
    return match[1].lower() if match else None


def record_sha256(record: Path, digest: str, of: Path) -> None:
    """Write ``record`` in ``sha256sum`` format for the file ``of``, with that file's permissions."""
    line = f"{digest}  {of.name}\n".encode()
    write_file_atomically(record, line, mode=of.stat().st_mode)


def adopt_legacy(entry: ModelEntry, target: Path) -> None:
    """Move a pinned entry's file, and its safetensors copy, from the flat layout of earlier versions
    (``cache_dir() / F``) into the entry's folder, when the file has the pinned sha256. The copy is
    checked against the file before every use, like any copy."""
    legacy = cache_dir() / entry.file
    if not entry.pinned or target.exists() or not legacy.is_file() or sha256_of(legacy) != entry.sha256:
        return
    copy, new_copy = legacy.with_name(Path(entry.file).stem + ".safetensors"), safetensors_path(entry)
    moves = [(legacy, target), (copy, new_copy), (copy_record_path(copy), copy_record_path(new_copy))]
    with storage_errors(entry, target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        for old, new in moves:
            if old != new and not new.exists():
                with suppress(FileNotFoundError):  # not there, or another process moved it first
                    os.replace(old, new)


def discard(entry: ModelEntry, path: Path, *, with_record: bool = False) -> None:
    """Delete a cached file that failed verification, with its safetensors copy (and hash record)."""
    with storage_errors(entry, path.parent):
        path.unlink(missing_ok=True)
        if with_record and not entry.pinned:
            record_path(entry).unlink(missing_ok=True)
        discard_copy(entry)


def discard_copy(entry: ModelEntry) -> None:
    copy = safetensors_path(entry)
    if cached_path(entry) != copy:
        copy.unlink(missing_ok=True)
        copy_record_path(copy).unlink(missing_ok=True)


def safetensors_copy(entry: ModelEntry, source: Path, observer: DownloadObserver) -> Path:
    """The valid safetensors copy of the verified ``source``, written first when needed; the source
    itself when the cache is read-only."""
    digest = expected_sha256(entry) or sha256_of(source)  # fetch() has just checked source against it
    copy = safetensors_path(entry)
    if _copy_is_valid(copy, digest):
        return copy
    try:
        with storage_errors(entry, copy.parent), exclusive_lock(entry, copy, "converting", observer):
            if not _copy_is_valid(copy, digest):
                _write_safetensors(source, copy, digest)
    except DownloadError as error:
        if isinstance(error.__cause__, OSError) and _is_read_only(error.__cause__, copy.parent):
            return source
        raise
    return copy


def _copy_is_valid(copy: Path, digest: str) -> bool:
    """Whether the safetensors copy was made from the file of sha256 ``digest`` and still has the sha256
    recorded when it was written."""
    if _safetensors_source(copy) != digest:
        return False
    recorded = read_copy_record(copy)
    return recorded is not None and sha256_of(copy) == recorded


def _is_read_only(err: OSError, folder: Path) -> bool:
    return err.errno == errno.EROFS or (
        err.errno in (errno.EACCES, errno.EPERM) and not os.access(folder, os.W_OK)
    )


def _safetensors_source(path: Path) -> str | None:
    """The source sha256 a safetensors copy was made from, ``None`` when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return (handle.metadata() or {}).get(SOURCE_SHA256_KEY)
    except (SafetensorError, OSError):
        return None


def _write_safetensors(source: Path, copy: Path, digest: str) -> None:
    """Write the copy and then its hash record, both synced, with the permissions of ``source``."""
    # torch loads lazily here: `swinir models` and plain downloads never pay for importing it.
    from safetensors.torch import save

    from swinir_cli.checkpoint import read_state_dict

    state = {name: tensor.detach().clone().contiguous() for name, tensor in read_state_dict(source).items()}
    data = save(state, metadata={SOURCE_SHA256_KEY: digest, "source_file": source.name})
    del state
    mode = source.stat().st_mode
    copy_record_path(copy).unlink(missing_ok=True)
    write_file_atomically(copy, data, mode=mode)
    write_file_atomically(
        copy_record_path(copy), f"{hashlib.sha256(data).hexdigest()}  {copy.name}\n".encode(), mode=mode
    )


@contextmanager
def storage_errors(entry: ModelEntry, directory: Path) -> Iterator[None]:
    """Report a cache that cannot be written (missing rights, read-only, disk full) as a
    :class:`DownloadError` naming the file."""
    try:
        yield
    except OSError as err:
        where = f" ({Path(err.filename).name})" if err.filename else ""
        raise DownloadError(
            f"cannot store model '{entry.name}' in the cache {directory}: {err.strerror or err}{where}"
        ) from err


@contextmanager
def exclusive_lock(entry: ModelEntry, path: Path, doing: str, observer: DownloadObserver) -> Iterator[None]:
    """Hold the cross-process lock of ``path`` (``.locks/NAME.lock`` in its folder), waiting for another
    holder after saying so through ``observer``."""
    locks = path.parent / ".locks"
    locks.mkdir(exist_ok=True)
    lock_path = locks / (path.name + ".lock")
    lock = FileLock(lock_path, mode=0o666)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        observer.emit(DownloadWaiting(entry.name, doing, path, lock_path))
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
