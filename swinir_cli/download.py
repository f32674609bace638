"""Verified downloads of registry models into the cache, and their fast-loading safetensors copies.

Cache layout (``registry.cache_dir()``), for an entry whose ``file`` is ``F.pth``:

- ``F.pth``: the verified file as published; ``F.pth.part``: an unfinished transfer, resumed next time;
- ``F.pth.sha256``: for unpinned entries, the hash of the first completed download (``sha256sum`` format),
  checked on every later use;
- ``F.safetensors``: the weights ``checkpoint.read_state_dict`` takes from ``F.pth``, written after
  verification; its metadata names the sha256 of the file it was made from;
- ``*.lock``: held (``flock``) while a process downloads or converts, so that concurrent processes wait
  for the first one instead of downloading again. The kernel drops the lock when its holder dies, so
  a crashed process never leaves a stale lock behind.

Nothing here prints: progress goes to a ``progress(done_bytes, total_bytes | None)`` callback.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from safetensors import SafetensorError, safe_open

from swinir_cli.errors import DownloadError, ModelNotFoundError
from swinir_cli.registry import ModelEntry, cache_dir

from ._version import __version__

ProgressCallback = Callable[[int, int | None], None]

DEFAULT_RETRIES = 4
DEFAULT_BACKOFF_S = 0.5
DEFAULT_TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20
#: HTTP statuses worth another try: the server may answer differently a moment later.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Errors of a dropped, refused or stalled connection.
TRANSIENT_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
SOURCE_SHA256_KEY = "source_sha256"


class _TransferInterrupted(Exception):
    """One attempt stopped early for a reason another attempt may not meet."""


@dataclass(frozen=True)
class CacheCheck:
    """The outcome of re-hashing one cached model (``swinir models --verify``).

    ``path`` is ``None`` when nothing is cached; ``problem`` is ``None`` when the file matches its pinned
    or recorded sha256 (a corrupt file has been deleted and ``problem`` says why).
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


def cached_path(entry: ModelEntry) -> Path:
    """Where the entry's verified file lives once fetched (for ``hf://`` sources: the Hub's own cache)."""
    if _is_hub(entry):
        import huggingface_hub  # imported on use: it takes a third of a second, wasted on plain URLs

        repo_id, revision, filename = _split_hub_url(entry.url)
        found = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(found, str):
            return Path(found)
    return cache_dir() / entry.file


def safetensors_path(entry: ModelEntry) -> Path:
    """Where the entry's safetensors copy lives (the file itself when it is already safetensors)."""
    return cache_dir() / (Path(entry.file).stem + ".safetensors")


def is_cached(entry: ModelEntry) -> bool:
    """Whether the entry's file is in the cache (existence only; :func:`verify_cached` re-hashes it)."""
    return cached_path(entry).is_file()


def fetch(
    entry: ModelEntry,
    *,
    progress: ProgressCallback | None = None,
    offline: bool | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff_s: float = DEFAULT_BACKOFF_S,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """The path of the entry's file in the cache, downloaded first if needed, always verified.

    A cached file is re-hashed on every call; a corrupt one is deleted and fetched again. A download is
    streamed to ``F.part`` under a lock, resumed with a Range request after a dropped connection, retried
    ``retries`` times without progress (waiting ``backoff_s * 2**n`` seconds), then size- and
    sha256-checked and renamed into place. ``offline`` (default: ``$SWINIR_OFFLINE``) forbids the network.

    Raises:
        ModelNotFoundError: offline and the file is not cached (the message says how to get it).
        DownloadError: the source is missing (404), unreachable after the retries, or its bytes do not
            match the pinned or recorded sha256 (they are deleted, never used).
    """
    offline = offline_from_env() if offline is None else offline
    if _is_hub(entry):
        return _fetch_from_hub(entry, offline, progress)
    target = cache_dir() / entry.file
    check = verify_cached(entry)
    if check.cached and check.problem is None:
        return target
    if offline and entry.is_remote:
        raise ModelNotFoundError(_missing_offline_message(entry, check.problem))
    with _storage_errors(entry, target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(target.with_name(target.name + ".lock")):
            check = verify_cached(entry)
            if check.cached and check.problem is None:
                return target
            part = target.with_name(target.name + ".part")
            if entry.is_remote:
                _download(entry, part, progress, retries, backoff_s, timeout_s)
            else:
                _copy_local(entry, part, progress)
            _accept(entry, part, target)
    return target


def verified_weights_path(
    entry: ModelEntry, *, progress: ProgressCallback | None = None, offline: bool | None = None
) -> Path:
    """The entry's weights as a verified, memory-mappable safetensors file (made once, then reused).

    Fetches and verifies the published file (see :func:`fetch`), then writes
    ``checkpoint.read_state_dict(file)`` as ``F.safetensors`` beside it, tagged with the file's sha256;
    a copy whose tag does not match the verified file is rebuilt.

    Raises:
        ModelNotFoundError, DownloadError: see :func:`fetch`.
        CheckpointError: the verified file is not a readable checkpoint.
    """
    source = fetch(entry, progress=progress, offline=offline)
    if source.suffix == ".safetensors":
        return source
    digest = expected_sha256(entry)
    assert digest is not None, "fetch() records the hash of an unpinned entry"
    copy = safetensors_path(entry)
    if _safetensors_source(copy) == digest:
        return copy
    with _storage_errors(entry, copy.parent), _exclusive_lock(copy.with_name(copy.name + ".lock")):
        if _safetensors_source(copy) != digest:
            _write_safetensors(source, copy, digest)
    return copy


def verify_cached(entry: ModelEntry) -> CacheCheck:
    """Re-hash the entry's cached file against its pinned or recorded sha256.

    An unpinned file without a record gets one now. A file that does not match is deleted, with its
    safetensors copy. Touches no network.
    """
    path = cached_path(entry)
    if not path.is_file():
        return CacheCheck(entry, None, None, None)
    digest = sha256_of(path)
    expected = expected_sha256(entry)
    if expected is None:
        _record_sha256(entry, digest)
    elif digest != expected:
        problem = f"sha256 {digest} does not match the expected {expected}; the file was deleted"
        _discard(entry, path)
        return CacheCheck(entry, path, digest, problem)
    return CacheCheck(entry, path, digest, None)


def expected_sha256(entry: ModelEntry) -> str | None:
    """The pinned sha256, else the one recorded at the first download, else ``None``."""
    if entry.sha256 is not None:
        return entry.sha256
    record = _record_path(entry)
    if not record.is_file():
        return None
    fields = record.read_text(encoding="ascii").split()
    return fields[0].lower() if fields else None


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_offline_message(entry: ModelEntry, problem: str | None) -> str:
    why = f"its cached file failed verification ({problem})" if problem else "it is not in the cache"
    if _is_hub(entry):
        how = "(huggingface_hub keeps it in its own cache)"
    else:
        how = f"or copy {entry.file} to {cache_dir() / entry.file}"
    return (
        f"model '{entry.name}' is needed but {why}, and SWINIR_OFFLINE forbids downloading it: "
        f"run `swinir download {entry.name}` while online {how}"
    )


def _accept(entry: ModelEntry, part: Path, target: Path) -> None:
    """Check a finished transfer's size and sha256, then rename it into place (or delete it and raise)."""
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
    if expected is None:
        _record_sha256(entry, digest)


def _download(
    entry: ModelEntry,
    part: Path,
    progress: ProgressCallback | None,
    retries: int,
    backoff_s: float,
    timeout_s: float,
) -> None:
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(entry, part, progress, timeout_s)
            return
        except (_TransferInterrupted, *TRANSIENT_ERRORS) as err:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                reason = " ".join(str(err).split())
                raise DownloadError(
                    f"cannot download model '{entry.name}' from {entry.url}: {reason} "
                    f"(gave up after {retries + 1} attempts without progress)"
                ) from err
            time.sleep(backoff_s * 2 ** max(failures - 1, 0))


def _transfer(entry: ModelEntry, part: Path, progress: ProgressCallback | None, timeout_s: float) -> None:
    """One HTTP attempt: append to ``part`` from where it ends; return once the body is complete."""
    have = part.stat().st_size if part.exists() else 0
    if entry.size is not None and have >= entry.size:
        if have == entry.size:
            return
        part.unlink()
        have = 0
    headers = {"User-Agent": f"swinir-cli/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(entry.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        raise _status_error(entry, err, part) from err
    with response:
        offset, total = _response_range(response, have)
        total = entry.size if total is None else total
        if entry.size is not None and total is not None and total != entry.size:
            raise DownloadError(
                f"model '{entry.name}': {entry.url} serves {total} bytes, expected {entry.size}"
            )
        _stream_body(response, part, offset, total, progress)


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


def _response_range(response: http.client.HTTPResponse, have: int) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (``None`` when unknown)."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        span, _, total = content_range.removeprefix("bytes ").partition("/")
        start = int(span.partition("-")[0]) if span else have
        if start != have:
            raise _TransferInterrupted(f"the server resumed at byte {start}, not {have}")
        return start, int(total) if total.isdigit() else None
    return 0, int(length) if length is not None and length.isdigit() else None


def _stream_body(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    progress: ProgressCallback | None,
) -> None:
    done = offset
    with part.open("r+b" if offset else "wb") as out:
        out.seek(offset)
        out.truncate()
        if progress:
            progress(done, total)
        while chunk := response.read(CHUNK_BYTES):
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        out.flush()
        os.fsync(out.fileno())
    if total is not None and done < total:
        raise _TransferInterrupted(f"the connection closed after {done} of {total} bytes")


def _copy_local(entry: ModelEntry, part: Path, progress: ProgressCallback | None) -> None:
    source = Path(unquote(urlsplit(entry.url).path))
    if not source.is_file():
        raise DownloadError(f"cannot fetch model '{entry.name}': no such file {source}")
    total = source.stat().st_size
    if progress:
        progress(0, total)
    shutil.copyfile(source, part)
    if progress:
        progress(total, total)


def _fetch_from_hub(entry: ModelEntry, offline: bool, progress: ProgressCallback | None) -> Path:
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
        raise DownloadError(
            f"cannot download model '{entry.name}' from {entry.url}: the Hub is unreachable"
        ) from err
    except (hub_errors.HfHubHTTPError, OSError) as err:
        reason = " ".join(str(err).split())
        raise DownloadError(f"cannot download model '{entry.name}' from {entry.url}: {reason}") from err
    path = Path(found)
    digest = sha256_of(path)
    expected = expected_sha256(entry)
    if expected is None:
        _record_sha256(entry, digest)
    elif digest != expected:
        raise DownloadError(
            f"model '{entry.name}': {path} from {entry.url} has sha256 {digest}, expected {expected}; "
            "not used (delete it from the Hugging Face cache)"
        )
    if progress:
        size = path.stat().st_size
        progress(size, size)
    return path


def _split_hub_url(url: str) -> tuple[str, str | None, str]:
    """``hf://owner/repo[@revision]/path/file`` -> (``owner/repo``, revision or ``None``, ``path/file``)."""
    owner, repo, *path = [part for part in url.removeprefix("hf://").split("/") if part]
    repo, _, revision = repo.partition("@")
    return f"{owner}/{repo}", revision or None, "/".join(path)


def _is_hub(entry: ModelEntry) -> bool:
    return entry.url.startswith("hf://")


def _record_path(entry: ModelEntry) -> Path:
    return cache_dir() / (entry.file + ".sha256")


def _record_sha256(entry: ModelEntry, digest: str) -> None:
    record = _record_path(entry)
    record.parent.mkdir(parents=True, exist_ok=True)
    temporary = record.with_name(record.name + ".tmp")
    temporary.write_text(f"{digest}  {entry.file}\n", encoding="ascii")
    os.replace(temporary, record)


def _discard(entry: ModelEntry, path: Path) -> None:
    path.unlink(missing_ok=True)
    safetensors_path(entry).unlink(missing_ok=True)


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
    # torch loads lazily here: `swinir models` and plain downloads never pay for importing it.
    from safetensors.torch import save_file

    from swinir_cli.checkpoint import read_state_dict

    state = {name: tensor.detach().clone().contiguous() for name, tensor in read_state_dict(source).items()}
    temporary = copy.with_name(copy.name + ".tmp")
    save_file(state, str(temporary), metadata={SOURCE_SHA256_KEY: digest, "source_file": source.name})
    os.replace(temporary, copy)


@contextmanager
def _storage_errors(entry: ModelEntry, directory: Path) -> Iterator[None]:
    """Report a cache that cannot be written (missing rights, disk full) as a :class:`DownloadError`."""
    try:
        yield
    except OSError as err:
        raise DownloadError(
            f"cannot store model '{entry.name}' in the cache {directory}: {err.strerror or err}"
        ) from err


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, waiting for other holders; the file is removed after.

    A holder removes the file while still holding it, so a waiter that locked the removed file sees it is
    no longer at ``path`` and locks afresh.
    """
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if _is_same_file(descriptor, path):
                break
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(descriptor)


def _is_same_file(descriptor: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except OSError as err:
        if err.errno == errno.ENOENT:
            return False
        raise
