"""Verified downloads of registry models into the cache, and their fast-loading safetensors copies.

Cache layout: each entry has its own folder, ``registry.cache_dir() / NAME`` (:func:`entry_dir`), so two
entries whose URLs end in the same file name never share a file. For an entry whose ``file`` is ``F.pth``:

- ``F.pth``: the verified file as published; ``F.pth.part``: an unfinished transfer, resumed next time;
- ``F.pth.sha256``: for unpinned entries, the hash of the first completed download that is a loadable
  checkpoint (``sha256sum`` format), checked on every later use;
- ``F.safetensors``: the weights ``checkpoint.read_state_dict`` takes from ``F.pth``, written after
  verification; its metadata names the sha256 of the file it was made from, and ``F.safetensors.sha256``
  records its own sha256, checked before every load (a copy that does not match is rebuilt);
- ``.locks/*.lock``, in the entry's folder: held (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on
  Windows) while a process
  downloads or converts, so that concurrent processes wait for the first one instead of downloading
  again. The OS drops a lock when its holder dies, so a crashed process never blocks the next one.

Earlier versions kept every entry's files directly in the cache folder; a pinned entry's file found there
with the pinned sha256 is moved into the entry's folder on first use (an unpinned one may be another
entry's, and is downloaded again). Weights that do not fit their entry's declared scale and channels are
refused, however they were verified.

Every file is written whole to a temporary name, synced and renamed (:mod:`swinir_cli.durable`), with the
permission bits of the downloaded file. Downloads are bounded: a body stops at the expected size (the
pinned size, else ``Content-Length``, else :data:`MAX_UNSIZED_BYTES`); an attempt whose status line and
headers take over ``timeout_s``, that stalls (no byte for ``timeout_s``) or crawls (under
:data:`MIN_BYTES_PER_S` over ``timeout_s``) is retried, and the whole fetch gives up after
``$SWINIR_DOWNLOAD_TIMEOUT`` seconds (default :data:`DEFAULT_DEADLINE_S`): a watchdog shuts the
connection when either time is up, wherever the exchange is blocked. A host that cannot be reached at all
(its name does not resolve, the connection is refused, no route) is tried once more, then reported with
the way to proceed offline.

Nothing here prints: progress goes to a ``progress(done_bytes, total_bytes | None)`` callback, and every
event (:class:`DownloadProgress`, :class:`DownloadRetry`, :class:`DownloadWaiting`) to an ``events``
callback, for the command line to show.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open

from swinir_cli.durable import write_file_atomically
from swinir_cli.errors import (
    CheckpointError,
    DownloadError,
    ModelNotFoundError,
    SourceUnreachableError,
    UsageError,
)
from swinir_cli.provenance import ContentId
from swinir_cli.reading import read_regular
from swinir_cli.registry import ModelEntry, cache_dir

from ._version import __version__

ProgressCallback = Callable[[int, int | None], None]

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
#: Where ``hf://`` sources come from.
HUB_HOST = "huggingface.co"
SOURCE_SHA256_KEY = "source_sha256"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_SHA256_RECORD = re.compile(r"([0-9a-fA-F]{64})(?:\s.*)?", re.DOTALL)
#: Longest hash record read: 64 hex digits, two spaces, a file name (at most 255 bytes) and a newline fit.
RECORD_MAX_BYTES = 4096


@dataclass(frozen=True)
class DownloadProgress:
    """``done`` of ``total`` bytes (``None``: unknown) of model ``model`` are in the cache."""

    model: str
    done: int
    total: int | None


@dataclass(frozen=True)
class DownloadRetry:
    """Attempt ``attempt`` failed for ``reason``; the next starts in ``wait_s`` seconds, and the whole
    fetch gives up ``deadline_s`` seconds after it started, or after the next attempt when ``last``."""

    model: str
    attempt: int
    reason: str
    wait_s: float
    deadline_s: float
    last: bool = False


@dataclass(frozen=True)
class DownloadWaiting:
    """Another process holds ``lock`` while it is ``doing`` (downloading or converting) ``path``; this
    one waits for it."""

    model: str
    doing: str
    path: Path
    lock: Path


DownloadEvent = DownloadProgress | DownloadRetry | DownloadWaiting
DownloadListener = Callable[[DownloadEvent], None]


@dataclass(frozen=True)
class _Observer:
    """Where a fetch reports: the plain ``progress(done, total)`` callback and the ``events`` listener."""

    model: str
    progress: ProgressCallback | None = None
    events: DownloadListener | None = None

    def bytes_done(self, done: int, total: int | None) -> None:
        if self.progress:
            self.progress(done, total)
        if self.events:
            self.events(DownloadProgress(self.model, done, total))

    def emit(self, event: DownloadEvent) -> None:
        if self.events:
            self.events(event)


class _TransferInterrupted(Exception):
    """One attempt stopped early for a reason another attempt may not meet."""


class _TransferStalled(_TransferInterrupted):
    """One attempt received too little to count as progress (a trickle or a stall)."""


@dataclass(frozen=True)
class CacheCheck:
    """The outcome of re-hashing one cached model (``swinir models --verify``).

    ``path`` is ``None`` when nothing is cached; ``problem`` is ``None`` when the file (and its
    safetensors copy, when there is one) matches its pinned or recorded sha256; otherwise the corrupt
    file has been deleted and ``problem`` says why.
    """

    entry: ModelEntry
    path: Path | None
    sha256: str | None
    problem: str | None

    @property
    def cached(self) -> bool:
        return self.path is not None


def offline_from_env() -> bool:
    """Whether ``SWINIR_OFFLINE`` asks for no network access (``1``, ``true``, ``yes`` or ``on``)."""
    return os.environ.get("SWINIR_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


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


def source_host(entry: ModelEntry) -> str | None:
    """The host an entry's file comes from (``None`` for a local file)."""
    return HUB_HOST if _is_hub(entry) else urlsplit(entry.url).hostname


def entry_dir(entry: ModelEntry) -> Path:
    """The entry's own folder in the cache: ``cache_dir() / NAME`` (names are plain, lowercase)."""
    return cache_dir() / entry.name


def cached_path(entry: ModelEntry) -> Path:
    """Where the entry's verified file lives once fetched (for ``hf://`` sources: the Hub's own cache)."""
    if _is_hub(entry):
        import huggingface_hub  # imported on use: it takes a third of a second, wasted on plain URLs

        repo_id, revision, filename = _split_hub_url(entry.url)
        found = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(found, str):
            return Path(found)
    return entry_dir(entry) / entry.file


def safetensors_path(entry: ModelEntry) -> Path:
    """Where the entry's safetensors copy lives (the file itself when it is already safetensors)."""
    return entry_dir(entry) / (Path(entry.file).stem + ".safetensors")


def is_cached(entry: ModelEntry) -> bool:
    """Whether the entry's file is in the cache (existence only; :func:`verify_cached` re-hashes it)."""
    return cached_path(entry).is_file()


def fetch(
    entry: ModelEntry,
    *,
    progress: ProgressCallback | None = None,
    events: DownloadListener | None = None,
    offline: bool | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff_s: float = DEFAULT_BACKOFF_S,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    deadline_s: float | None = None,
) -> Path:
    """The path of the entry's file in the cache, downloaded first if needed, always verified.

    A cached file is re-hashed on every call; a corrupt one is deleted and fetched again. A download is
    streamed to ``F.part`` under a lock, resumed with a Range request after a dropped connection, retried
    ``retries`` times without progress (waiting ``backoff_s * 2**n`` seconds; an attempt that gets no
    byte for ``timeout_s`` or crawls below :data:`MIN_BYTES_PER_S` counts as one without progress), and
    abandoned ``deadline_s`` seconds after it started (default :func:`deadline_from_env`). It is then
    size- and sha256-checked and renamed into place; the first download of an unpinned entry must also
    be a loadable checkpoint before its hash is recorded. ``offline`` (default: ``$SWINIR_OFFLINE``)
    forbids the network. ``progress(done, total)`` and ``events`` receive the bytes done, retries and
    waits for another process.

    Raises:
        ModelNotFoundError: offline and the file is not cached (the message says how to get it).
        SourceUnreachableError: the host cannot be reached at all, twice (the message says how to proceed).
        DownloadError: the source is missing (404), unreachable after the retries or the deadline, sends
            a malformed response, is not a checkpoint (unpinned), or its bytes do not match the pinned
            or recorded sha256 (they are deleted, never used); or the cache cannot be written.
        UsageError: ``$SWINIR_DOWNLOAD_TIMEOUT`` is not a positive number.
    """
    offline = offline_from_env() if offline is None else offline
    deadline_s = deadline_from_env() if deadline_s is None else deadline_s
    observer = _Observer(entry.name, progress, events)
    if _is_hub(entry):
        return _fetch_from_hub(entry, offline, observer)
    target = entry_dir(entry) / entry.file
    _adopt_legacy(entry, target)
    problem = _check_source(entry)
    if problem is None and target.is_file():
        return target
    if offline and entry.is_remote:
        raise ModelNotFoundError(_missing_offline_message(entry, problem))
    with _storage_errors(entry, target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(entry, target, "downloading", observer):
            if _check_source(entry) is None and target.is_file():
                return target
            part = target.with_name(target.name + ".part")
            if entry.is_remote:
                attempts = _Attempts(retries, backoff_s, timeout_s, time.monotonic() + deadline_s, deadline_s)
                _download(entry, part, observer, attempts)
            else:
                _copy_local(entry, part, observer)
            _accept(entry, part, target)
    return target


def verified_weights_path(
    entry: ModelEntry,
    *,
    progress: ProgressCallback | None = None,
    events: DownloadListener | None = None,
    offline: bool | None = None,
) -> Path:
    """The entry's weights as a verified, memory-mappable safetensors file (made once, then reused).

    Fetches and verifies the published file (see :func:`fetch`), then writes
    ``checkpoint.read_state_dict(file)`` as ``F.safetensors`` beside it, tagged with the file's sha256,
    and records the copy's own sha256. A copy whose tag or hash does not match is rebuilt. An unpinned
    cached file that turns out not to be a checkpoint (a cache poisoned before this check existed) is
    deleted with its record and downloaded again. When the cache is read-only and holds no valid copy,
    the verified published file itself is returned (it loads more slowly, as safely).

    Raises:
        ModelNotFoundError, DownloadError, UsageError: see :func:`fetch`.
        CheckpointError: the verified file of a pinned entry is not a readable checkpoint.
    """
    weights = _weights_path(entry, progress, events, offline)
    _check_fit(entry, weights)
    return weights


def _weights_path(
    entry: ModelEntry,
    progress: ProgressCallback | None,
    events: DownloadListener | None,
    offline: bool | None,
) -> Path:
    source = fetch(entry, progress=progress, events=events, offline=offline)
    if source.suffix == ".safetensors":
        return source
    try:
        return _safetensors_copy(entry, source, _Observer(entry.name, progress, events))
    except CheckpointError:
        if entry.pinned:
            raise
    _discard(entry, source, with_record=True)
    source = fetch(entry, progress=progress, events=events, offline=offline)
    return _safetensors_copy(entry, source, _Observer(entry.name, progress, events))


def _check_fit(entry: ModelEntry, weights: Path) -> None:
    """Refuse weights whose network does not make what the entry declares: its scale (1 for denoising
    and JPEG models) and its channels.

    Raises:
        DownloadError: they do not fit (one line naming the entry, the file and both settings).
        CheckpointError: they are not a SwinIR checkpoint.
    """
    from swinir_cli.checkpoint import detect_config

    config = detect_config(_tensor_shapes(weights))
    declared = (entry.scale, entry.channels)
    if (config.upscale, config.in_chans) != declared:
        raise DownloadError(
            f"model '{entry.name}': its weights {weights} make {_made(config.upscale, config.in_chans)} "
            f"results, but the registry entry declares {entry.task} {entry.level_label} on "
            f"{_made(*declared)} images; not used (check the entry's url and {entry.kind.level_key})"
        )


def _made(scale: int, channels: int) -> str:
    return f"x{scale} {'gray' if channels == 1 else 'color'}"


def _tensor_shapes(weights: Path) -> dict[str, Any]:
    """The checkpoint's tensors with their shapes and no data: a safetensors header is all that is read
    (a ``.pth``, served from a read-only cache, is read whole)."""
    import torch

    from swinir_cli.checkpoint import read_state_dict

    if weights.suffix != ".safetensors":
        return read_state_dict(weights)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {
                name: torch.empty(handle.get_slice(name).get_shape(), device="meta")
                for name in handle.keys()  # noqa: SIM118 (a handle is not iterable)
            }
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None


def verify_cached(entry: ModelEntry) -> CacheCheck:
    """Re-hash the entry's cached file against its pinned or recorded sha256, and its safetensors copy
    against the copy's recorded sha256.

    An unpinned file without a record gets one now, once it has been read as a checkpoint. A file that
    does not match is deleted, with its safetensors copy; a copy that does not match is deleted alone
    (it is rebuilt from the verified file on next use). Touches no network.

    Raises:
        DownloadError: a recorded-hash file is unreadable or malformed, or the cache cannot be written.
    """
    if not _is_hub(entry):
        _adopt_legacy(entry, cached_path(entry))
    path = cached_path(entry)
    if not path.is_file():
        return CacheCheck(entry, None, None, None)
    digest = sha256_of(path)
    problem = _check_source(entry, digest)
    if problem is None:
        problem = _check_copy(entry)
    return CacheCheck(entry, path, digest, problem)


def expected_sha256(entry: ModelEntry) -> str | None:
    """The pinned sha256, else the one recorded at the first download, else ``None``.

    Raises:
        DownloadError: the record file is unreadable or is not a sha256 record.
    """
    if entry.sha256 is not None:
        return entry.sha256
    return _read_record(_record_path(entry), entry)


def sha256_of(path: Path) -> str:
    """The hex sha256 of a regular file, read in 1 MiB chunks (:meth:`ContentId.of_file`)."""
    return ContentId.of_file(path).sha256


def _check_source(entry: ModelEntry, digest: str | None = None) -> str | None:
    """Why the cached published file cannot be used (it has been deleted), or ``None`` when it can or is
    not there. Records the hash of an unpinned file that has none yet, if it reads as a checkpoint."""
    path = cached_path(entry)
    if not path.is_file():
        return None
    digest = digest or sha256_of(path)
    expected = expected_sha256(entry)
    if expected is None:
        unloadable = _checkpoint_problem(path)
        if unloadable is not None:
            _discard(entry, path)
            return f"it is not a checkpoint ({unloadable}); the file was deleted"
        with _storage_errors(entry, path.parent):
            _record_sha256(_record_path(entry), digest, path)
        return None
    if digest != expected:
        _discard(entry, path)
        return f"sha256 {digest} does not match the expected {expected}; the file was deleted"
    return None


def _check_copy(entry: ModelEntry) -> str | None:
    """Why the safetensors copy failed its recorded sha256 (it has been deleted), else ``None``."""
    copy = safetensors_path(entry)
    if not copy.is_file() or cached_path(entry).suffix == ".safetensors":
        return None
    recorded = _read_copy_record(copy)
    digest = sha256_of(copy)
    if recorded == digest:
        return None
    with _storage_errors(entry, copy.parent):
        _discard_copy(entry)
    if recorded is None:  # made by a version that recorded no hash: unverifiable, so rebuilt, not corrupt
        return None
    return (
        f"its safetensors copy {copy.name} has sha256 {digest}, recorded {recorded}; "
        "it was deleted and is rebuilt on next use"
    )


def _checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a checkpoint (one line), else ``None``."""
    from swinir_cli.checkpoint import read_state_dict  # torch loads lazily: `swinir models` stays fast

    try:
        read_state_dict(path)
    except CheckpointError as error:
        return str(error).removeprefix(f"{path}: ")
    return None


def _missing_offline_message(entry: ModelEntry, problem: str | None) -> str:
    why = f"its cached file failed verification ({problem})" if problem else "it is not in the cache"
    return (
        f"model '{entry.name}' is needed but {why}, and SWINIR_OFFLINE forbids downloading it: "
        f"{_how_to_proceed_offline(entry)}"
    )


def _how_to_proceed_offline(entry: ModelEntry) -> str:
    if _is_hub(entry):
        where = "(huggingface_hub keeps it in its own cache)"
    else:
        where = f"or copy {entry.file} from there to {entry_dir(entry) / entry.file}"
    return (
        f"run `swinir download {entry.name}` where the network is reachable {where}, or pass --weights FILE"
    )


def _unreachable_error(entry: ModelEntry, host: str, why: str) -> SourceUnreachableError:
    return SourceUnreachableError(
        f"cannot download model '{entry.name}': {host} cannot be reached ({why}); offline? "
        + _how_to_proceed_offline(entry),
        host,
    )


def _unreachable_reason(err: BaseException) -> str | None:
    """Why the host cannot be reached at all (its name does not resolve, it refuses, no route), else
    ``None`` (a slow, busy or misbehaving host)."""
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, socket.gaierror):
        return f"its name does not resolve: {reason.strerror or reason}"
    if isinstance(reason, OSError) and reason.errno in UNREACHABLE_ERRNOS:
        return (reason.strerror or str(reason)).lower()
    return None


def _adopt_legacy(entry: ModelEntry, target: Path) -> None:
    """Move a pinned entry's file, and its safetensors copy, from the flat layout of earlier versions
    (``cache_dir() / F``) into the entry's folder, when the file has the pinned sha256. The copy is
    checked against the file before every use, like any copy."""
    legacy = cache_dir() / entry.file
    if not entry.pinned or target.exists() or not legacy.is_file() or sha256_of(legacy) != entry.sha256:
        return
    copy, new_copy = legacy.with_name(Path(entry.file).stem + ".safetensors"), safetensors_path(entry)
    moves = [(legacy, target), (copy, new_copy), (_copy_record_path(copy), _copy_record_path(new_copy))]
    with _storage_errors(entry, target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        for old, new in moves:
            if old != new and not new.exists():
                with suppress(FileNotFoundError):  # not there, or another process moved it first
                    os.replace(old, new)


def _accept(entry: ModelEntry, part: Path, target: Path) -> None:
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
        origin = "pinned" if entry.pinned else f"recorded in {_record_path(entry)} at the first download"
        raise DownloadError(
            f"model '{entry.name}': {entry.url} has sha256 {digest}, expected {expected} ({origin}); "
            "the file was deleted"
        )
    os.replace(part, target)
    if expected is None:  # read under its own name: the suffix tells .pth from .safetensors
        unloadable = _checkpoint_problem(target)
        if unloadable is not None:
            target.unlink()
            raise DownloadError(
                f"model '{entry.name}': {entry.url} did not send a checkpoint ({unloadable}); "
                "nothing was recorded or kept"
            )
        _record_sha256(_record_path(entry), digest, target)


@dataclass(frozen=True)
class _Attempts:
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


def _download(entry: ModelEntry, part: Path, observer: _Observer, attempts: _Attempts) -> None:
    failures = 0
    attempt = 0
    unreachable_before = False
    while True:
        attempt += 1
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(entry, part, observer, attempts)
            return
        except (_TransferInterrupted, *TRANSIENT_ERRORS) as err:
            reason = _reason(err)
            unreachable = _unreachable_reason(err)
            if unreachable is not None and unreachable_before:
                raise _unreachable_error(entry, source_host(entry) or entry.url, unreachable) from err
            unreachable_before = unreachable is not None
            if attempts.remaining_s() <= 0:
                raise DownloadError(
                    f"cannot download model '{entry.name}' from {entry.url}: gave up after "
                    f"{attempts.deadline_s:g} s ({reason}); set {DEADLINE_VARIABLE}=SECONDS to allow longer"
                ) from err
            after = part.stat().st_size if part.exists() else 0
            progressed = after > before and not isinstance(err, _TransferStalled)
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


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, http.client.BadStatusLine):
        return f"malformed HTTP status line {text[:80]!r}"
    if isinstance(err, TimeoutError | urllib.error.URLError) and "timed out" in text:
        return "the server sent nothing (timed out)"
    return text or type(err).__name__


def _transfer(entry: ModelEntry, part: Path, observer: _Observer, attempts: _Attempts) -> None:
    """One HTTP attempt: append to ``part`` from where it ends; return once the body is complete."""
    have = part.stat().st_size if part.exists() else 0
    if entry.size is not None and have >= entry.size:
        if have == entry.size:
            return
        part.unlink()
        have = 0
    if attempts.remaining_s() <= 0:
        raise _TransferStalled("the deadline passed")
    headers = {"User-Agent": f"swinir-cli/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(entry.url, headers=headers)
    watchdog = _Watchdog()
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


class _Watchdog:
    """Bounds one attempt as a whole: once its time is up, it shuts the attempt's connections, wherever
    the exchange is blocked (TLS handshake, status line, headers, body), and :meth:`converting` turns
    the failure this causes into :class:`_TransferStalled` saying why. Connecting itself is bounded by
    the socket timeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._descriptors: list[int] = []
        self._generation = 0
        self._armed = False
        self._timer: threading.Timer | None = None
        self.fired: str | None = None

    def arm(self, seconds: float, reason: str) -> None:
        """Fire ``seconds`` from now (replacing an earlier time), saying ``reason``."""
        with self._lock:
            self._stop_timer()
            self._generation += 1
            self._armed = True
            self._timer = threading.Timer(max(seconds, 0.0), self._fire, (self._generation, reason))
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        """Never fire from now on (waits for a firing under way to finish)."""
        with self._lock:
            self._armed = False
            self._stop_timer()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def opener(self) -> urllib.request.OpenerDirector:
        """A urllib opener (proxies and redirects as usual) whose connections this watchdog watches."""
        watchdog = self

        class WatchedHTTP(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(watchdog._connection(http.client.HTTPConnection), req)

        class WatchedHTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(
                    watchdog._connection(http.client.HTTPSConnection), req, context=self._context
                )

        return urllib.request.build_opener(WatchedHTTP, WatchedHTTPS)

    @contextmanager
    def converting(self) -> Iterator[None]:
        """Report what a fired watchdog caused (a reset or a cut connection) as the stall it is."""
        try:
            yield
        except (OSError, http.client.HTTPException, _TransferInterrupted) as err:
            if self.fired is not None:
                raise _TransferStalled(self.fired) from err
            raise
        if self.fired is not None:  # a body without a stated size ends, cut, like a complete one
            raise _TransferStalled(self.fired)

    def _connection(self, base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        watch = self._watch

        class Watched(base):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                create = self._create_connection

                def connect_watched(*args: Any, **kwargs: Any) -> socket.socket:
                    sock = create(*args, **kwargs)
                    watch(sock.fileno())
                    return sock

                self._create_connection = connect_watched

        return Watched

    def _watch(self, descriptor: int) -> None:
        with self._lock:
            self._descriptors.append(descriptor)
            if self.fired is not None:
                _shut(descriptor)

    def _fire(self, generation: int, reason: str) -> None:
        with self._lock:
            if not self._armed or generation != self._generation:
                return
            self.fired = reason
            for descriptor in self._descriptors:
                _shut(descriptor)


def _shut(descriptor: int) -> None:
    """Shut a connected socket down by its descriptor (the TLS layer over it, holding the same
    descriptor, then reads an end of file); anything else is left alone."""
    try:
        sock = socket.socket(fileno=descriptor)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()


def _status_error(entry: ModelEntry, err: urllib.error.HTTPError, part: Path) -> Exception:
    """The error for an HTTP error status: final (:class:`DownloadError`) or worth another attempt."""
    if err.code == 416:
        part.unlink(missing_ok=True)
        return _TransferInterrupted("the server refused to resume the partial file (HTTP 416)")
    if err.code in RETRYABLE_STATUSES:
        return _TransferInterrupted(f"HTTP {err.code} {err.reason}")
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
        raise _TransferInterrupted(f"the server resumed at byte {start}, not {have}")
    return start, int(match[3]) if match[3].isdigit() else None


def _stream_body(
    entry: ModelEntry,
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    observer: _Observer,
    attempts: _Attempts,
) -> None:
    """Append the body to ``part``, stopping at ``total`` bytes whatever the server sends after.

    Raises:
        _TransferStalled: the body crawls below :data:`MIN_BYTES_PER_S`, or the deadline passes.
        _TransferInterrupted: the connection closed before ``total`` bytes.
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
                raise _TransferStalled(f"the deadline passed after {done} bytes")
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
                    raise _TransferStalled(f"the server sent only {window_bytes} bytes in {elapsed:.0f} s")
                window_start, window_bytes = time.monotonic(), 0
        _write_part(out, b"", part, sync=True)
    if total is not None and done < total:
        raise _TransferInterrupted(f"the connection closed after {done} of {total} bytes")


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
    """``err`` with ``path`` as its file name, for the message of :func:`_storage_errors`."""
    return OSError(err.errno, err.strerror, str(path)) if err.errno else err


def _set_socket_timeout(response: http.client.HTTPResponse, seconds: float) -> None:
    """Bound the next read by ``seconds`` (the remaining deadline may be shorter than ``timeout_s``)."""
    raw = getattr(response.fp, "raw", None)
    sock = getattr(raw, "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _copy_local(entry: ModelEntry, part: Path, observer: _Observer) -> None:
    source = Path(unquote(urlsplit(entry.url).path))
    if not source.is_file():
        raise DownloadError(f"cannot fetch model '{entry.name}': no such file {source}")
    total = source.stat().st_size
    observer.bytes_done(0, total)
    shutil.copyfile(source, part)
    observer.bytes_done(total, total)


def _fetch_from_hub(entry: ModelEntry, offline: bool, observer: _Observer) -> Path:
    """Download through huggingface_hub (its cache, resume and locking), then check the sha256."""
    import huggingface_hub  # imported on use: it takes a third of a second, wasted on plain URLs
    from huggingface_hub import errors as hub_errors

    repo_id, revision, filename = _split_hub_url(entry.url)
    try:
        found = huggingface_hub.hf_hub_download(
            repo_id, filename, revision=revision, local_files_only=offline
        )
    except hub_errors.LocalEntryNotFoundError as err:
        if offline:
            raise ModelNotFoundError(_missing_offline_message(entry, None)) from err
        raise _unreachable_error(entry, HUB_HOST, "the Hugging Face Hub does not answer") from err
    except (hub_errors.HfHubHTTPError, OSError) as err:
        raise DownloadError(f"cannot download model '{entry.name}' from {entry.url}: {_reason(err)}") from err
    path = Path(found)
    digest = sha256_of(path)
    expected = expected_sha256(entry)
    if expected is None:
        unloadable = _checkpoint_problem(path)
        if unloadable is not None:
            raise DownloadError(
                f"model '{entry.name}': {path} from {entry.url} is not a checkpoint ({unloadable}); "
                "not used (delete it from the Hugging Face cache)"
            )
        with _storage_errors(entry, entry_dir(entry)):
            entry_dir(entry).mkdir(parents=True, exist_ok=True)
            _record_sha256(_record_path(entry), digest, path)
    elif digest != expected:
        raise DownloadError(
            f"model '{entry.name}': {path} from {entry.url} has sha256 {digest}, expected {expected}; "
            "not used (delete it from the Hugging Face cache)"
        )
    size = path.stat().st_size
    observer.bytes_done(size, size)
    return path


def _split_hub_url(url: str) -> tuple[str, str | None, str]:
    """``hf://owner/repo[@revision]/path/file`` -> (``owner/repo``, revision or ``None``, ``path/file``)."""
    owner, repo, *path = [part for part in url.removeprefix("hf://").split("/") if part]
    repo, _, revision = repo.partition("@")
    return f"{owner}/{repo}", revision or None, "/".join(path)


def _is_hub(entry: ModelEntry) -> bool:
    return entry.url.startswith("hf://")


def _record_path(entry: ModelEntry) -> Path:
    return entry_dir(entry) / (entry.file + ".sha256")


def _copy_record_path(copy: Path) -> Path:
    return copy.with_name(copy.name + ".sha256")


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


def _read_copy_record(copy: Path) -> str | None:
    """The recorded sha256 of a safetensors copy; ``None`` when missing or malformed (the copy is
    derived data: it is then rebuilt, never trusted)."""
    try:
        record = read_regular(_copy_record_path(copy), RECORD_MAX_BYTES)
        match = _SHA256_RECORD.fullmatch(record.decode("ascii").strip())
    except (OSError, UnicodeDecodeError):
        return None
    return match[1].lower() if match else None


def _record_sha256(record: Path, digest: str, of: Path) -> None:
    """Write ``record`` in ``sha256sum`` format for the file ``of``, with that file's permissions."""
    line = f"{digest}  {of.name}\n".encode()
    write_file_atomically(record, line, mode=of.stat().st_mode)


def _discard(entry: ModelEntry, path: Path, *, with_record: bool = False) -> None:
    """Delete a cached file that failed verification, with its safetensors copy (and hash record)."""
    with _storage_errors(entry, path.parent):
        path.unlink(missing_ok=True)
        if with_record and not entry.pinned:
            _record_path(entry).unlink(missing_ok=True)
        _discard_copy(entry)


def _discard_copy(entry: ModelEntry) -> None:
    copy = safetensors_path(entry)
    if cached_path(entry) != copy:
        copy.unlink(missing_ok=True)
        _copy_record_path(copy).unlink(missing_ok=True)


def _copy_is_valid(copy: Path, digest: str) -> bool:
    """Whether the safetensors copy was made from the file of sha256 ``digest`` and still has the sha256
    recorded when it was written."""
    if _safetensors_source(copy) != digest:
        return False
    recorded = _read_copy_record(copy)
    return recorded is not None and sha256_of(copy) == recorded


def _safetensors_copy(entry: ModelEntry, source: Path, observer: _Observer) -> Path:
    """The valid safetensors copy of the verified ``source``, written first when needed; the source
    itself when the cache is read-only."""
    digest = expected_sha256(entry) or sha256_of(source)  # fetch() has just checked source against it
    copy = safetensors_path(entry)
    if _copy_is_valid(copy, digest):
        return copy
    try:
        with _storage_errors(entry, copy.parent), _exclusive_lock(entry, copy, "converting", observer):
            if not _copy_is_valid(copy, digest):
                _write_safetensors(source, copy, digest)
    except DownloadError as error:
        if isinstance(error.__cause__, OSError) and _is_read_only(error.__cause__, copy.parent):
            return source
        raise
    return copy


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
    _copy_record_path(copy).unlink(missing_ok=True)
    write_file_atomically(copy, data, mode=mode)
    write_file_atomically(
        _copy_record_path(copy), f"{hashlib.sha256(data).hexdigest()}  {copy.name}\n".encode(), mode=mode
    )


@contextmanager
def _storage_errors(entry: ModelEntry, directory: Path) -> Iterator[None]:
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
def _exclusive_lock(entry: ModelEntry, path: Path, doing: str, observer: _Observer) -> Iterator[None]:
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
