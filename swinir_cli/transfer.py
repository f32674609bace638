"""HTTP transfer of one file into a partial file: resumed, retried, bounded in time.

A body stops at the expected size (the pinned size, else ``Content-Length``, else
:data:`MAX_UNSIZED_BYTES`); an attempt whose status line and headers take over ``timeout_s``, that stalls
(no byte for ``timeout_s``) or crawls (under :data:`MIN_BYTES_PER_S` over ``timeout_s``) is retried, and
the whole transfer gives up after ``$SWINIR_DOWNLOAD_TIMEOUT`` seconds (default
:data:`DEFAULT_DEADLINE_S`): a watchdog shuts the connection when either time is up, wherever the exchange
is blocked. A host that cannot be reached at all (its name does not resolve, the connection is refused,
no route) is tried once more, then reported as :class:`HostUnreachable`. What the file is, and where it
goes once complete, is :mod:`swinir_cli.download`'s business.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from ._version import __version__
from .download_events import DownloadObserver, DownloadRetry
from .errors import DownloadError, UsageError
from .registry import ModelEntry
from .watchdog import TransferInterrupted, TransferStalled, Watchdog

__all__ = [
    "DEADLINE_VARIABLE",
    "DEFAULT_BACKOFF_S",
    "DEFAULT_DEADLINE_S",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "MAX_UNSIZED_BYTES",
    "MIN_BYTES_PER_S",
    "Attempts",
    "HostUnreachable",
    "deadline_from_env",
    "describe_error",
    "download_to_part",
]

DEFAULT_RETRIES = 4
DEFAULT_BACKOFF_S = 0.5
DEFAULT_TIMEOUT_S = 30.0
#: Seconds a whole fetch may take, retries included, unless ``$SWINIR_DOWNLOAD_TIMEOUT`` says otherwise.
DEFAULT_DEADLINE_S = 1200.0
DEADLINE_VARIABLE = "SWINIR_DOWNLOAD_TIMEOUT"
#: An attempt slower than this over ``timeout_s`` seconds is abandoned (and retried) as stalled.
MIN_BYTES_PER_S = 1024
#: The most a server may send for a file of unknown size (no pinned size, no ``Content-Length``).
MAX_UNSIZED_BYTES = 4 << 30
CHUNK_BYTES = 1 << 20
#: HTTP statuses worth another try: the server may answer differently a moment later.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Errors of a dropped, refused or stalled connection, or of a garbled response (bad status line).
TRANSIENT_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
#: Connection errors that say the host cannot be reached at all (rather than that it is slow or busy).
UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class HostUnreachable(Exception):
    """The host cannot be reached at all (its name does not resolve, it refuses, no route): ``why``."""

    def __init__(self, host: str, why: str) -> None:
        super().__init__(f"{host} cannot be reached ({why})")
        self.host, self.why = host, why


def deadline_from_env() -> float:
    """Seconds a fetch may take in all: ``$SWINIR_DOWNLOAD_TIMEOUT``, else :data:`DEFAULT_DEADLINE_S`.

    Raises:
        UsageError: the variable is not a positive number of seconds.
    """
    text = os.environ.get(DEADLINE_VARIABLE, "").strip()
    if not text:
        return DEFAULT_DEADLINE_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"{DEADLINE_VARIABLE}={text!r}: expected a positive number of seconds")
    return seconds


@dataclass(frozen=True)
class Attempts:
    """How hard one fetch tries: ``retries`` attempts without progress, ``backoff_s * 2**n`` between
    them, ``timeout_s`` per network wait (and the window of the speed floor), until ``deadline``
    (``time.monotonic()``), ``deadline_s`` after the start."""

    retries: int
    backoff_s: float
    timeout_s: float
    deadline: float
    deadline_s: float

    def remaining_s(self) -> float:
        return self.deadline - time.monotonic()

    def wait_s(self) -> float:
        """The socket timeout of the next network wait: ``timeout_s``, less when the deadline is nearer."""
        return max(min(self.timeout_s, self.remaining_s()), 0.001)


def download_to_part(entry: ModelEntry, part: Path, observer: DownloadObserver, attempts: Attempts) -> None:
    """Download ``entry.url`` into ``part``, resuming what it holds, until the body is complete.

    Raises:
        HostUnreachable: the host could not be reached at all, twice.
        DownloadError: the server refuses for good, answers malformed, or the attempts or the deadline
            run out.
    """
    failures = 0
    attempt = 0
    unreachable_before = False
    while True:
        attempt += 1
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(entry, part, observer, attempts)
            return
        except (TransferInterrupted, *TRANSIENT_ERRORS) as err:
            reason = describe_error(err)
            unreachable = _unreachable_reason(err)
            if unreachable is not None and unreachable_before:
                raise HostUnreachable(urlsplit(entry.url).hostname or entry.url, unreachable) from err
            unreachable_before = unreachable is not None
            if attempts.remaining_s() <= 0:
                raise DownloadError(
                    f"cannot download model '{entry.name}' from {entry.url}: gave up after "
                    f"{attempts.deadline_s:g} s ({reason}); set {DEADLINE_VARIABLE}=SECONDS to allow longer"
                ) from err
            after = part.stat().st_size if part.exists() else 0
            progressed = after > before and not isinstance(err, TransferStalled)
            failures = 0 if progressed else failures + 1
            if failures > attempts.retries:
                raise DownloadError(
                    f"cannot download model '{entry.name}' from {entry.url}: {reason} "
                    f"(gave up after {attempts.retries + 1} attempts without progress)"
                ) from err
            wait = min(attempts.backoff_s * 2 ** max(failures - 1, 0), max(attempts.remaining_s(), 0))
            last = unreachable_before or failures == attempts.retries
            observer.emit(DownloadRetry(entry.name, attempt, reason, wait, attempts.deadline_s, last))
            time.sleep(wait)


def describe_error(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, http.client.BadStatusLine):
        return f"malformed HTTP status line {text[:80]!r}"
    if isinstance(err, TimeoutError | urllib.error.URLError) and "timed out" in text:
        return "the server sent nothing (timed out)"
    return text or type(err).__name__


def _unreachable_reason(err: BaseException) -> str | None:
    """Why the host cannot be reached at all (its name does not resolve, it refuses, no route), else
    ``None`` (a slow, busy or misbehaving host)."""
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, socket.gaierror):
        return f"its name does not resolve: {reason.strerror or reason}"
    if isinstance(reason, OSError) and reason.errno in UNREACHABLE_ERRNOS:
        return (reason.strerror or str(reason)).lower()
    return None


def _transfer(entry: ModelEntry, part: Path, observer: DownloadObserver, attempts: Attempts) -> None:
    """One HTTP attempt: append to ``part`` from where it ends; return once the body is complete."""
    have = part.stat().st_size if part.exists() else 0
    if entry.size is not None and have >= entry.size:
        if have == entry.size:
            return
        part.unlink()
        have = 0
    if attempts.remaining_s() <= 0:
        raise TransferStalled("the deadline passed")
    headers = {"User-Agent": f"swinir-cli/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(entry.url, headers=headers)
    watchdog = Watchdog()
    head_s = attempts.wait_s()
    watchdog.arm(head_s, f"no complete status line and headers within {head_s:.3g} s")
    try:
        with watchdog.converting():
            try:
                response = watchdog.opener().open(request, timeout=head_s)
            except urllib.error.HTTPError as err:
                raise _status_error(entry, err, part) from err
            watchdog.arm(attempts.remaining_s(), "the deadline passed")
            try:
                offset, total = _response_range(entry, response, have)
                total = entry.size if total is None else total
                if entry.size is not None and total is not None and total != entry.size:
                    raise DownloadError(
                        f"model '{entry.name}': {entry.url} serves {total} bytes, expected {entry.size}"
                    )
                _stream_body(entry, response, part, offset, total, observer, attempts)
            finally:
                watchdog.disarm()  # before the connection closes: its descriptor may then be reused
                response.close()
    finally:
        watchdog.disarm()


def _status_error(entry: ModelEntry, err: urllib.error.HTTPError, part: Path) -> Exception:
    """The error for an HTTP error status: final (:class:`DownloadError`) or worth another attempt."""
    if err.code == 416:
        part.unlink(missing_ok=True)
        return TransferInterrupted("the server refused to resume the partial file (HTTP 416)")
    if err.code in RETRYABLE_STATUSES:
        return TransferInterrupted(f"HTTP {err.code} {err.reason}")
    return DownloadError(
        f"cannot download model '{entry.name}': {entry.url} answered HTTP {err.code} {err.reason}"
    )


def _response_range(
    entry: ModelEntry, response: http.client.HTTPResponse, have: int
) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (``None`` when unknown).

    Raises:
        DownloadError: a 206 answer whose ``Content-Range`` is missing or malformed.
    """
    length = response.headers.get("Content-Length", "").strip()
    if response.status != 206:
        return 0, int(length) if length.isdigit() else None
    content_range = response.headers.get("Content-Range", "")
    match = _CONTENT_RANGE.fullmatch(content_range.strip())
    if match is None or int(match[1]) > int(match[2]):
        raise DownloadError(
            f"cannot download model '{entry.name}': {entry.url} answered a partial request with a "
            f"malformed Content-Range {content_range[:80]!r}"
        )
    start = int(match[1])
    if start != have:
        raise TransferInterrupted(f"the server resumed at byte {start}, not {have}")
    return start, int(match[3]) if match[3].isdigit() else None


def _stream_body(
    entry: ModelEntry,
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    observer: DownloadObserver,
    attempts: Attempts,
) -> None:
    """Append the body to ``part``, stopping at ``total`` bytes whatever the server sends after.

    Raises:
        TransferStalled: the body crawls below :data:`MIN_BYTES_PER_S`, or the deadline passes.
        TransferInterrupted: the connection closed before ``total`` bytes.
        DownloadError: no size is known and the body exceeds :data:`MAX_UNSIZED_BYTES`.
    """
    limit = total if total is not None else MAX_UNSIZED_BYTES
    done = offset
    window_start, window_bytes = time.monotonic(), 0
    try:
        out = part.open("r+b" if offset else "wb")
    except OSError as err:
        raise _named(err, part) from err
    with out:
        out.seek(offset)
        out.truncate()
        observer.bytes_done(done, total)
        while done < limit or total is None:
            if attempts.remaining_s() <= 0:
                raise TransferStalled(f"the deadline passed after {done} bytes")
            _set_socket_timeout(response, attempts.wait_s())
            chunk = response.read1(min(CHUNK_BYTES, limit - done + 1))
            if not chunk:
                break
            if total is None and done + len(chunk) > limit:
                raise DownloadError(
                    f"cannot download model '{entry.name}': {entry.url} sent more than "
                    f"{MAX_UNSIZED_BYTES} bytes for a file of no stated size"
                )
            chunk = chunk[: limit - done]
            _write_part(out, chunk, part)
            done += len(chunk)
            window_bytes += len(chunk)
            observer.bytes_done(done, total)
            elapsed = time.monotonic() - window_start
            if elapsed >= attempts.timeout_s:
                if window_bytes < MIN_BYTES_PER_S * elapsed:
                    out.flush()
                    raise TransferStalled(f"the server sent only {window_bytes} bytes in {elapsed:.0f} s")
                window_start, window_bytes = time.monotonic(), 0
        _write_part(out, b"", part, sync=True)
    if total is not None and done < total:
        raise TransferInterrupted(f"the connection closed after {done} of {total} bytes")


def _write_part(out: BinaryIO, chunk: bytes, part: Path, *, sync: bool = False) -> None:
    """Append ``chunk`` to the open ``part`` (then flush and fsync when ``sync``); a failure (a full
    disk) names the file."""
    try:
        out.write(chunk)
        if sync:
            out.flush()
            os.fsync(out.fileno())
    except OSError as err:
        raise _named(err, part) from err


def _named(err: OSError, path: Path) -> OSError:
    """``err`` with ``path`` as its file name, for the message of :func:`storage_errors`."""
    return OSError(err.errno, err.strerror, str(path)) if err.errno else err


def _set_socket_timeout(response: http.client.HTTPResponse, seconds: float) -> None:
    """Bound the next read by ``seconds`` (the remaining deadline may be shorter than ``timeout_s``)."""
    raw = getattr(response.fp, "raw", None)
    sock = getattr(raw, "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)
