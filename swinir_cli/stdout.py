"""Writes to standard output that either complete or fail with one line naming ``<stdout>``.

Standard output is one per process, and so is its state here: after the first failed write (stdout
closed, its reader gone, its disk full, a write that makes no progress) every later write fails at once
with the same error, and file descriptor 1 is pointed at the null device so that the interpreter's own
flush at exit has nothing left to fail on. A failure that nothing has reported yet can be set aside
(:func:`defer_failure`) for the command line to report once, at the end (:func:`deferred_failure`).

Imports nothing from the rest of the project but its errors and :func:`~swinir_cli.durable.write_all`.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import sys

from .durable import write_all
from .errors import StdoutError

#: How messages name standard output.
STDOUT_NAME = "<stdout>"

_failure: StdoutError | None = None
_deferred: StdoutError | None = None


def write_stdout(data: bytes) -> None:
    """All of ``data`` on standard output, past Python's buffers; on a regular file also synced, so that
    a disk that fills up fails here rather than after exit. A ``sys.stdout`` without a descriptor (an
    in-memory stand-in: tests, a program embedding this one) gets the bytes through its own buffer.

    Raises:
        StdoutError: standard output is closed, its reader went away, its disk is full, or an earlier
            write to it failed.
    """
    global _failure
    if _failure is not None:
        raise _failure
    try:
        descriptor = _descriptor()
        if descriptor is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        with open(descriptor, "wb", buffering=0, closefd=False) as stream:
            write_all(stream, data)
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.fsync(descriptor)
    except OSError as err:
        closed = err.errno == errno.EBADF
        why = "standard output is closed" if closed else f"cannot write ({err.strerror or err})"
        _failure = StdoutError(f"{STDOUT_NAME}: {why}")
        _silence()
        raise _failure from None


def defer_failure(error: StdoutError) -> None:
    """Keep ``error`` for :func:`deferred_failure`: the writer goes on without standard output."""
    global _deferred
    _deferred = _deferred or error


def deferred_failure() -> StdoutError | None:
    """The failure :func:`defer_failure` set aside, once (then ``None``)."""
    global _deferred
    error, _deferred = _deferred, None
    return error


def _descriptor() -> int | None:
    """File descriptor 1, once Python's own buffer for it is flushed; ``None`` for a ``sys.stdout`` that
    has none.

    When standard output was closed at start, Python has no ``sys.stdout`` and descriptor 1 may since
    belong to a file this process opened: it is then never written.
    """
    stream = sys.stdout
    if stream is None:
        raise OSError(errno.EBADF, "standard output is closed")
    try:
        stream.flush()
        return stream.fileno()
    except io.UnsupportedOperation:
        return None
    except ValueError:  # a stream closed from within Python
        raise OSError(errno.EBADF, "standard output is closed") from None


def _silence() -> None:
    """Point descriptor 1 at the null device, when it is still standard output's."""
    if sys.stdout is None:
        return
    try:
        descriptor = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        return
    try:
        os.dup2(null, descriptor)
    finally:
        os.close(null)
