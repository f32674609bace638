"""What a fetch reports while it runs: bytes done, retries, and waits for another process.

Nothing that fetches prints: progress goes to a ``progress(done_bytes, total_bytes | None)`` callback,
and every event (:class:`DownloadProgress`, :class:`DownloadRetry`, :class:`DownloadWaiting`) to an
``events`` listener, for the command line to show; :class:`DownloadObserver` holds both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DownloadEvent",
    "DownloadListener",
    "DownloadObserver",
    "DownloadProgress",
    "DownloadRetry",
    "DownloadWaiting",
    "ProgressCallback",
]

ProgressCallback = Callable[[int, int | None], None]


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
class DownloadObserver:
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
