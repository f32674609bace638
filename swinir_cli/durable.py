"""Writes that either complete on disk or fail: every byte written, flushed and synced, then published.

Used by the image writer and the model cache: :func:`atomic_file` is the one writer of both; imports
nothing from the rest of the project.

A temporary file is named ``.<STEM>.<pid>-<12 hex>.tmp`` after the process that writes it, so another
process removes it only once that writer is gone (:func:`writer_is_gone`). Publishing
(:func:`publish`) either replaces whatever is there, only the very file that was there when the work
began, or nothing: a file another process wrote meanwhile is never replaced unless that was asked for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
#: Longest file name, in bytes, of the file systems in use (ext4, XFS, Btrfs, APFS; NTFS counts UTF-16 units),
#: where the file system does not say (:func:`name_limit`).
NAME_MAX = 255
#: The random part of a temporary name: ``.<STEM>.<pid>-<12 hex digits>.tmp``.
TOKEN_HEX_DIGITS = 12
#: Room kept for the writer's process id in a temporary name (2**32 has 10 digits), so that every
#: process shortens a long stem the same way.
PID_DIGITS = 10
_TEMPORARY_EXTRA_BYTES = len("..") + PID_DIGITS + len("-") + TOKEN_HEX_DIGITS + len(".tmp")
# Earlier versions named no pid in their temporary names: their writer is unknown.
_TEMPORARY_PATTERN = re.compile(
    rf"\.(?P<stem>.+)\.(?:(?P<pid>[0-9]{{1,{PID_DIGITS}}})-)?[0-9a-f]{{{TOKEN_HEX_DIGITS}}}\.tmp", re.DOTALL
)


def temporary_stem(name: str) -> str:
    """``name``, shortened (never below one character) so that ``.STEM.<pid>-<12 hex>.tmp`` fits NAME_MAX:
    a temporary name fits whenever the name it stands for fits."""
    stem = name
    while len(stem) > 1 and len(os.fsencode(stem)) + _TEMPORARY_EXTRA_BYTES > NAME_MAX:
        stem = stem[:-1]
    return stem


def temporary_path(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path``, naming this process:
    ``.<STEM>.<pid>-<12 hex>.tmp`` (:func:`temporary_stem`)."""
    token = secrets.token_hex(TOKEN_HEX_DIGITS // 2)
    return path.with_name(f".{temporary_stem(path.name)}.{os.getpid()}-{token}.tmp")


def temporary_owner(name: str) -> tuple[str, int | None] | None:
    """(stem, writer's pid) of a :func:`temporary_path` name (pid None for names of earlier versions,
    which held none), or None for any other name."""
    match = _TEMPORARY_PATTERN.fullmatch(name)
    if match is None:
        return None
    return match["stem"], None if match["pid"] is None else int(match["pid"])


def writer_is_gone(pid: int | None) -> bool:
    """Whether the process ``pid`` that wrote a temporary file has ended, so the file is stale.

    A name without a pid (earlier versions) counts as gone. Where processes cannot be probed without
    harm (Windows, whose ``os.kill`` ends them), every writer counts as alive: a leftover stays.
    """
    if pid is None:
        return True
    if os.name != "posix" or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


@dataclass(frozen=True)
class FileIdentity:
    """Which file a path held when it was looked at: a file replaced or rewritten since differs."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity | None:
        """The identity of the file at ``path`` (links not followed), None when there is none."""
        try:
            status = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


#: What :func:`publish` may replace: anything (``"any"``), nothing (None: the target must not exist), or
#: only the file of that identity.
Replaces = FileIdentity | None | Literal["any"]


# The errors of a file system that has no hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def publish(temporary: Path, target: Path, replaces: Replaces) -> None:
    """Give the complete file ``temporary`` the name ``target``, as ``replaces`` allows.

    ``"any"``: renamed over whatever is there. None: hard-linked, which fails if ``target`` appeared
    meanwhile, then the temporary name is removed; file systems without hard links (FAT, some network
    shares) fall back to a check then a rename, whose gap is a few microseconds. A
    :class:`FileIdentity`: renamed over ``target`` only when it still holds that file (checked just
    before the rename).

    Raises:
        FileExistsError: ``target`` is not what ``replaces`` allows (naming ``target``).
        OSError: from the OS.
    """
    if replaces == "any":
        os.replace(temporary, target)
        return
    if replaces is None:
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
            os.rename(temporary, target)
            return
        os.unlink(temporary)
        return
    if FileIdentity.of(target) != replaces:
        raise FileExistsError(errno.EEXIST, "changed meanwhile", str(target))
    os.replace(temporary, target)


def name_limit(folder: Path) -> int:
    """The longest file name, in bytes, the file system of ``folder`` takes (its nearest existing
    ancestor, when ``folder`` is still to be made); :data:`NAME_MAX` where it does not say."""
    for candidate in (folder, *folder.parents):
        try:
            return int(os.pathconf(candidate, "PC_NAME_MAX"))
        except (OSError, ValueError, AttributeError):  # missing (look higher), or no pathconf here
            if candidate.exists():
                break
    return NAME_MAX


def overlong_name(path: Path) -> tuple[str, int, int] | None:
    """(part, its bytes, the limit) for the first part of ``path`` longer than the file system takes,
    else None. A part that fits leaves room for its temporary name (:func:`temporary_stem`)."""
    limit = name_limit(path.parent)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            return part, size, limit
    return None


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


@contextlib.contextmanager
def atomic_file(path: Path, *, mode: int | None = None, replaces: Replaces = "any") -> Iterator[BinaryIO]:
    """The one atomic writer: a new :func:`temporary_path` beside ``path``, open for unbuffered writing
    (:func:`open_new`; ``mode`` sets its permission bits on POSIX); when the block ends without error,
    the file is synced, published as ``path`` as ``replaces`` allows (:func:`publish`) and the rename
    synced; on any failure, the block's own included, the temporary file is removed.

    Raises:
        FileExistsError: ``path`` is not what ``replaces`` allows.
        OSError: from the OS or the block, ``err.filename`` naming ``path`` where it named no file or the
            temporary one.
    """
    temporary = temporary_path(path)
    try:
        with open_new(temporary, mode) as stream:
            yield stream
            os.fsync(stream.fileno())
        publish(temporary, path, replaces)
        sync_directory(path.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        if err.filename is None or Path(err.filename) == temporary:
            err.filename = str(path)
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_file_atomically(path: Path, data: bytes | bytearray | memoryview, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` through :func:`atomic_file` (``mode`` as there)."""
    with atomic_file(path, mode=mode) as stream:
        write_all(stream, data)


# Per folder: the temporary files found when this process first wrote there, by output stem, with the
# pid of each one's writer.
_FOUND_TEMPORARIES: dict[str, dict[str, list[tuple[str, int | None]]]] = {}
_FOUND_LOCK = threading.Lock()


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files for ``path`` whose writer is gone (a killed process).

    The folder is listed once per process; only files present then are candidates, and of those only
    the ones whose writer's process has ended (:func:`writer_is_gone`): a temporary file another running
    process is writing is never touched.

    Raises:
        OSError: a stale file that could not be removed (``err.filename`` naming it).
    """
    folder = os.path.abspath(path.parent)
    with _FOUND_LOCK:
        if folder not in _FOUND_TEMPORARIES:
            _FOUND_TEMPORARIES[folder] = _list_temporaries(folder)
        found = _FOUND_TEMPORARIES[folder].pop(temporary_stem(path.name), [])
    for name, pid in found:
        if writer_is_gone(pid):
            with contextlib.suppress(FileNotFoundError):  # another process cleaned it up first
                os.unlink(os.path.join(folder, name))


def _list_temporaries(folder: str) -> dict[str, list[tuple[str, int | None]]]:
    found: dict[str, list[tuple[str, int | None]]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                owner = temporary_owner(entry.name)
                if owner is not None and entry.is_file(follow_symlinks=False):
                    stem, pid = owner
                    found.setdefault(stem, []).append((entry.name, pid))
    except OSError:
        return {}  # a missing or unreadable folder: the write itself reports it
    return found
