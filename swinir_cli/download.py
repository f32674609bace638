"""Verified downloads of registry models into the cache, and their fast-loading safetensors copies.

The entry point of fetching: :func:`fetch` (the published file, verified), :func:`verified_weights_path`
(its safetensors copy, checked against the entry), :func:`is_cached` and :func:`verify_cached`
(``swinir models --verify``). The work is shared out by concern: :mod:`swinir_cli.transfer` moves bytes
over HTTP, :mod:`swinir_cli.hub` asks the Hugging Face Hub, :mod:`swinir_cli.cache_records` keeps the
cache's files, hash records and copies, and :mod:`swinir_cli.download_events` says what happens. This
module decides what a file must be to be used: its pinned or recorded sha256, a loadable checkpoint
before a first hash is recorded, weights that fit their entry's declared scale and channels (refused
otherwise, however they were verified). A pinned entry's file found in the flat layout of earlier
versions with the pinned sha256 is moved into the entry's folder on first use (an unpinned one may be
another entry's, and is downloaded again). A host that cannot be reached at all is reported with the
way to proceed offline.

Nothing here prints: progress goes to a ``progress(done_bytes, total_bytes | None)`` callback, and every
event (:class:`DownloadProgress`, :class:`DownloadRetry`, :class:`DownloadWaiting`) to an ``events``
callback, for the command line to show.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .cache_checks import accept_part, check_copy, check_source, checkpoint_problem
from .cache_records import (
    adopt_legacy,
    cached_path,
    discard,
    entry_dir,
    exclusive_lock,
    expected_sha256,
    record_path,
    record_sha256,
    safetensors_copy,
    sha256_of,
    storage_errors,
)
from .download_events import (
    DownloadEvent,
    DownloadListener,
    DownloadObserver,
    DownloadProgress,
    DownloadRetry,
    DownloadWaiting,
    ProgressCallback,
)
from .errors import CheckpointError, DownloadError, ModelNotFoundError, SourceUnreachableError
from .hub import HUB_HOST, download_from_hub, is_hub
from .registry import ModelEntry
from .transfer import (
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    Attempts,
    HostUnreachable,
    deadline_from_env,
    download_to_part,
)

__all__ = [
    "CacheCheck",
    "DownloadEvent",
    "DownloadListener",
    "DownloadProgress",
    "DownloadRetry",
    "DownloadWaiting",
    "ProgressCallback",
    "cached_path",
    "fetch",
    "is_cached",
    "offline_from_env",
    "sha256_of",
    "source_host",
    "verified_weights_path",
    "verify_cached",
]


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


def source_host(entry: ModelEntry) -> str | None:
    """The host an entry's file comes from (``None`` for a local file)."""
    return HUB_HOST if is_hub(entry) else urlsplit(entry.url).hostname


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
    ``retries`` times without progress (waiting ``backoff_s * 2**n`` seconds; an attempt that gets no byte
    for ``timeout_s`` or crawls below :data:`~swinir_cli.transfer.MIN_BYTES_PER_S` counts as one without
    progress), and abandoned ``deadline_s`` seconds after it started (default :func:`deadline_from_env`). It
    is then size- and sha256-checked and renamed into place; the first download of an unpinned entry must
    also be a loadable checkpoint before its hash is recorded. ``offline`` (default: ``$SWINIR_OFFLINE``)
    forbids the network. ``progress(done, total)`` and ``events`` receive the bytes done, retries and waits
    for another process.

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
    observer = DownloadObserver(entry.name, progress, events)
    if is_hub(entry):
        return _fetch_from_hub(entry, offline, observer)
    target = entry_dir(entry) / entry.file
    adopt_legacy(entry, target)
    problem = check_source(entry)
    if problem is None and target.is_file():
        return target
    if offline and entry.is_remote:
        raise ModelNotFoundError(_missing_offline_message(entry, problem))
    with storage_errors(entry, target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(entry, target, "downloading", observer):
            if check_source(entry) is None and target.is_file():
                return target
            part = target.with_name(target.name + ".part")
            if entry.is_remote:
                attempts = Attempts(retries, backoff_s, timeout_s, time.monotonic() + deadline_s, deadline_s)
                try:
                    download_to_part(entry, part, observer, attempts)
                except HostUnreachable as err:
                    raise _unreachable_error(entry, err.host, err.why) from err.__cause__
            else:
                _copy_local(entry, part, observer)
            accept_part(entry, part, target)
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
        return safetensors_copy(entry, source, DownloadObserver(entry.name, progress, events))
    except CheckpointError:
        if entry.pinned:
            raise
    discard(entry, source, with_record=True)
    source = fetch(entry, progress=progress, events=events, offline=offline)
    return safetensors_copy(entry, source, DownloadObserver(entry.name, progress, events))


def _check_fit(entry: ModelEntry, weights: Path) -> None:
    """Refuse weights whose network does not make what the entry declares: its scale (1 for denoising
    and JPEG models) and its channels.

    Raises:
        DownloadError: they do not fit (one line naming the entry, the file and both settings).
        CheckpointError: they are not a SwinIR checkpoint.
    """
    from .checkpoint import read_config  # torch loads lazily: `swinir models` stays fast

    config = read_config(weights)
    declared = (entry.scale, entry.channels)
    if (config.upscale, config.in_chans) != declared:
        raise DownloadError(
            f"model '{entry.name}': its weights {weights} make {_made(config.upscale, config.in_chans)} "
            f"results, but the registry entry declares {entry.task} {entry.level_label} on "
            f"{_made(*declared)} images; not used (check the entry's url and {entry.kind.level_key})"
        )


def _made(scale: int, channels: int) -> str:
    return f"x{scale} {'gray' if channels == 1 else 'color'}"


def verify_cached(entry: ModelEntry) -> CacheCheck:
    """Re-hash the entry's cached file against its pinned or recorded sha256, and its safetensors copy
    against the copy's recorded sha256.

    An unpinned file without a record gets one now, once it has been read as a checkpoint. A file that
    does not match is deleted, with its safetensors copy; a copy that does not match is deleted alone
    (it is rebuilt from the verified file on next use). Touches no network.

    Raises:
        DownloadError: a recorded-hash file is unreadable or malformed, or the cache cannot be written.
    """
    if not is_hub(entry):
        adopt_legacy(entry, cached_path(entry))
    path = cached_path(entry)
    if not path.is_file():
        return CacheCheck(entry, None, None, None)
    digest = sha256_of(path)
    problem = check_source(entry, digest)
    if problem is None:
        problem = check_copy(entry)
    return CacheCheck(entry, path, digest, problem)


def _copy_local(entry: ModelEntry, part: Path, observer: DownloadObserver) -> None:
    source = Path(unquote(urlsplit(entry.url).path))
    if not source.is_file():
        raise DownloadError(f"cannot fetch model '{entry.name}': no such file {source}")
    total = source.stat().st_size
    observer.bytes_done(0, total)
    shutil.copyfile(source, part)
    observer.bytes_done(total, total)


def _fetch_from_hub(entry: ModelEntry, offline: bool, observer: DownloadObserver) -> Path:
    """Download through huggingface_hub (its cache, resume and locking), then check the sha256."""
    try:
        path = download_from_hub(entry, offline=offline)
    except HostUnreachable as err:
        if offline:
            raise ModelNotFoundError(_missing_offline_message(entry, None)) from err.__cause__
        raise _unreachable_error(entry, err.host, err.why) from err.__cause__
    digest = sha256_of(path)
    expected = expected_sha256(entry)
    if expected is None:
        unloadable = checkpoint_problem(path)
        if unloadable is not None:
            raise DownloadError(
                f"model '{entry.name}': {path} from {entry.url} is not a checkpoint ({unloadable}); "
                "not used (delete it from the Hugging Face cache)"
            )
        with storage_errors(entry, entry_dir(entry)):
            entry_dir(entry).mkdir(parents=True, exist_ok=True)
            record_sha256(record_path(entry), digest, path)
    elif digest != expected:
        raise DownloadError(
            f"model '{entry.name}': {path} from {entry.url} has sha256 {digest}, expected {expected}; "
            "not used (delete it from the Hugging Face cache)"
        )
    size = path.stat().st_size
    observer.bytes_done(size, size)
    return path


def _missing_offline_message(entry: ModelEntry, problem: str | None) -> str:
    why = f"its cached file failed verification ({problem})" if problem else "it is not in the cache"
    return (
        f"model '{entry.name}' is needed but {why}, and SWINIR_OFFLINE forbids downloading it: "
        f"{_how_to_proceed_offline(entry)}"
    )


def _how_to_proceed_offline(entry: ModelEntry) -> str:
    if is_hub(entry):
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
