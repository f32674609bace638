"""Writes that either complete on disk or fail: every byte written, flushed and synced, then renamed.

Used by the image writer and the model cache; imports nothing from the rest of the project.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
#: Longest file name, in bytes, of the file systems in use (ext4, XFS, Btrfs, APFS; NTFS counts UTF-16 units).
NAME_MAX = 255
#: The random part of a temporary name: ``.<STEM>.<12 hex digits>.tmp``.
TOKEN_HEX_DIGITS = 12
_TEMPORARY_EXTRA_BYTES = len("..") + TOKEN_HEX_DIGITS + len(".tmp")


def temporary_stem(name: str) -> str:
    """``name``, shortened (never below one character) so that ``.STEM.<12 hex>.tmp`` fits NAME_MAX:
    a temporary name fits whenever the name it stands for fits."""
    stem = name
    while len(stem) > 1 and len(os.fsencode(stem)) + _TEMPORARY_EXTRA_BYTES > NAME_MAX:
        stem = stem[:-1]
    return stem


def temporary_path(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path``: ``.<STEM>.<12 hex>.tmp`` (:func:`temporary_stem`)."""
    return path.with_name(f".{temporary_stem(path.name)}.{secrets.token_hex(TOKEN_HEX_DIGITS // 2)}.tmp")


def write_all(stream: BinaryIO, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to an unbuffered stream, however many calls the OS needs.

    Raises OSError from the OS (``ENOSPC`` on a full disk), or ``EIO`` when a write makes no progress.
    """
    view = memoryview(data).cast("B")
    while view:
        written = stream.write(view)
        if not written:
            raise OSError(errno.EIO, "the system wrote nothing (short write)")
        view = view[written:]


def open_new(path: Path, mode: int | None = None) -> BinaryIO:
    """Create ``path`` (it must not exist) for unbuffered binary writing; ``mode`` (permission bits)
    replaces what the umask gives, on POSIX."""
    descriptor = os.open(path, _CREATE_FLAGS, 0o666)
    try:
        if mode is not None and os.name == "posix":
            os.fchmod(descriptor, stat.S_IMODE(mode))
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "wb", buffering=0)


def sync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX only: Windows cannot open a folder for syncing)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_file_atomically(path: Path, data: bytes | bytearray | memoryview, mode: int | None = None) -> None:
    """Replace ``path`` with ``data``: written whole into :func:`temporary_path` beside it, synced, renamed.

    ``mode`` sets the permission bits (POSIX). On failure the temporary file is removed and the OSError
    propagates (``err.filename`` names the file that failed).
    """
    temporary = temporary_path(path)
    try:
        with open_new(temporary, mode) as stream:
            write_all(stream, data)
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        sync_directory(path.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        if err.filename is None or Path(err.filename) == temporary:
            err.filename = str(path)
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
