"""What makes a file in the cache fit for use: its pinned or recorded sha256, and a checkpoint to read.

A cached file that fails is deleted, with its safetensors copy; a finished transfer that fails is deleted
before it takes the file's name. The first download of an unpinned entry must read as a checkpoint
before its hash is recorded, so that a server's error page is never recorded as the model.
"""

from __future__ import annotations

import os
from pathlib import Path

from .cache_records import (
    cached_path,
    discard,
    discard_copy,
    expected_sha256,
    read_copy_record,
    record_path,
    record_sha256,
    safetensors_path,
    sha256_of,
    storage_errors,
)
from .errors import CheckpointError, DownloadError
from .registry import ModelEntry

__all__ = ["accept_part", "check_copy", "check_source", "checkpoint_problem"]


def check_source(entry: ModelEntry, digest: str | None = None) -> str | None:
    """Why the cached published file cannot be used (it has been deleted), or ``None`` when it can or is
    not there. Records the hash of an unpinned file that has none yet, if it reads as a checkpoint."""
    path = cached_path(entry)
    if not path.is_file():
        return None
    digest = digest or sha256_of(path)
    expected = expected_sha256(entry)
    if expected is None:
        unloadable = checkpoint_problem(path)
        if unloadable is not None:
            discard(entry, path)
            return f"it is not a checkpoint ({unloadable}); the file was deleted"
        with storage_errors(entry, path.parent):
            record_sha256(record_path(entry), digest, path)
        return None
    if digest != expected:
        discard(entry, path)
        return f"sha256 {digest} does not match the expected {expected}; the file was deleted"
    return None


def check_copy(entry: ModelEntry) -> str | None:
    """Why the safetensors copy failed its recorded sha256 (it has been deleted), else ``None``."""
    copy = safetensors_path(entry)
    if not copy.is_file() or cached_path(entry).suffix == ".safetensors":
        return None
    recorded = read_copy_record(copy)
    digest = sha256_of(copy)
    if recorded == digest:
        return None
    with storage_errors(entry, copy.parent):
        discard_copy(entry)
    if recorded is None:  # made by a version that recorded no hash: unverifiable, so rebuilt, not corrupt
        return None
    return (
        f"its safetensors copy {copy.name} has sha256 {digest}, recorded {recorded}; "
        "it was deleted and is rebuilt on next use"
    )


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a checkpoint (one line), else ``None``."""
    from .checkpoint import read_state_dict  # torch loads lazily: `swinir models` stays fast

    try:
        read_state_dict(path)
    except CheckpointError as error:
        return str(error).removeprefix(f"{path}: ")
    return None


def accept_part(entry: ModelEntry, part: Path, target: Path) -> None:
    """Check a finished transfer's size and sha256 (and, for a first unpinned download, that it reads as a
    checkpoint), then rename it into place and record its hash; or delete it and raise."""
    size = part.stat().st_size
    if entry.size is not None and size != entry.size:
        part.unlink()
        raise DownloadError(
            f"model '{entry.name}': {entry.url} gave {size} bytes, expected {entry.size}; "
            "the file was deleted"
        )
    digest = sha256_of(part)
    expected = expected_sha256(entry)
    if expected is not None and digest != expected:
        part.unlink()
        origin = "pinned" if entry.pinned else f"recorded in {record_path(entry)} at the first download"
        raise DownloadError(
            f"model '{entry.name}': {entry.url} has sha256 {digest}, expected {expected} ({origin}); "
            "the file was deleted"
        )
    os.replace(part, target)
    if expected is None:  # read under its own name: the suffix tells .pth from .safetensors
        unloadable = checkpoint_problem(target)
        if unloadable is not None:
            target.unlink()
            raise DownloadError(
                f"model '{entry.name}': {entry.url} did not send a checkpoint ({unloadable}); "
                "nothing was recorded or kept"
            )
        record_sha256(record_path(entry), digest, target)
