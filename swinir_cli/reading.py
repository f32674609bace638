"""Reads that never block on what is not a file and never take more bytes than their reader allows.

Every file swinir reads (images, weights, hash records, registries) is opened here: without blocking (a
FIFO must not wait for a writer) and refused at once unless it is a regular file, also behind a symlink.
Reads of a whole file or stream stop one byte past their bound. Imports nothing from the rest of the
project; failures are OSErrors whose ``strerror`` says what went wrong, so callers keep one handler.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_CHUNK_BYTES = 1 << 20


class NotRegularFileError(OSError):
    """A path names a directory, FIFO, device or socket where a regular file is expected."""


class FileTooLargeError(OSError):
    """A file or stream holds more bytes than its reader accepts."""


def special_file_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is not a regular file (``None`` for a regular file)."""
    kinds = (
        (stat.S_ISDIR, "is a directory"),
        (stat.S_ISFIFO, "is a FIFO, not a regular file"),
        (stat.S_ISCHR, "is a character device, not a regular file"),
        (stat.S_ISBLK, "is a block device, not a regular file"),
        (stat.S_ISSOCK, "is a socket, not a regular file"),
    )
    for test, kind in kinds:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: Path | str) -> BinaryIO:
    """``path`` opened for buffered binary reading, once the open file is known to be a regular file.

    Raises:
        NotRegularFileError: it is a directory, FIFO, device or socket (``strerror`` says which).
        OSError: it cannot be opened (missing, permissions).
    """
    descriptor = os.open(path, _READ_FLAGS)
    try:
        kind = special_file_kind(os.fstat(descriptor).st_mode)
        if kind is not None:
            code = errno.EISDIR if kind == "is a directory" else errno.EINVAL
            raise NotRegularFileError(code, kind, os.fspath(path))
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def read_within(stream: BinaryIO, max_bytes: int | None, name: str) -> bytes:
    """Every byte left in ``stream``, read in chunks; ``max_bytes`` None reads without a bound.

    Raises:
        FileTooLargeError: the stream holds more than ``max_bytes`` (only one byte past it is read).
        OSError: from the read.
    """
    chunks: list[bytes] = []
    total = 0
    while max_bytes is None or total <= max_bytes:
        wanted = _CHUNK_BYTES if max_bytes is None else min(_CHUNK_BYTES, max_bytes + 1 - total)
        chunk = stream.read(wanted)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    raise FileTooLargeError(errno.EFBIG, f"more than {max_bytes} bytes", name)


def read_regular(path: Path | str, max_bytes: int) -> bytes:
    """The whole of the regular file ``path``, at most ``max_bytes`` long (judged by its size first).

    Raises:
        NotRegularFileError, FileTooLargeError, OSError: see :func:`open_regular` and :func:`read_within`.
    """
    with open_regular(path) as stream:
        if os.fstat(stream.fileno()).st_size > max_bytes:
            raise FileTooLargeError(errno.EFBIG, f"more than {max_bytes} bytes", os.fspath(path))
        return read_within(stream, max_bytes, os.fspath(path))
