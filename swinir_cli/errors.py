"""Typed errors. The command line turns each into one line on stderr and an exit code.

Every error raised on purpose by swinir-cli derives from :class:`SwinIRError`; its message is a
complete sentence that names the file, model or value at fault, so that nothing else needs printing.
"""

from __future__ import annotations

from .signals import EXIT_INTERRUPTED


class SwinIRError(Exception):
    """Base class of every error swinir-cli raises on purpose."""

    exit_code: int = 1


class BatchStopError(SwinIRError):
    """An error that every later image of a batch would hit too: the batch stops with this one line."""


class UsageError(BatchStopError):
    """The command was asked for something it cannot do (bad option value, incompatible choices)."""

    exit_code = 2


class InterruptedByUser(SwinIRError):
    """Ctrl-C (SIGINT, or SIGTERM/SIGHUP: :mod:`swinir_cli.signals`) outside a batch's own handling: a
    download, a model load, a verification."""

    exit_code = EXIT_INTERRUPTED


class CheckpointError(SwinIRError):
    """A weights file cannot be read, is unsafe, or is not a SwinIR checkpoint."""


class StateDictMismatchError(CheckpointError):
    """A state dict's tensors do not fit the network: missing, unexpected or mis-shaped tensors."""

    def __init__(
        self,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        source: str = "state dict",
    ) -> None:
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        parts = []
        if missing:
            parts.append(f"missing {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected {_first(unexpected)}")
        if mismatched:
            shown = [f"{name} (file {tuple(got)}, network {tuple(want)})" for name, got, want in mismatched]
            parts.append(f"mis-shaped {_first(shown)}")
        super().__init__(f"{source} does not fit the network: " + "; ".join(parts))


class ImageError(SwinIRError):
    """An input image cannot be read or an output image cannot be written."""


class NonFiniteResultError(SwinIRError):
    """The model's result for an image holds inf or NaN even in fp32: it would be written black or white."""


class DownloadError(SwinIRError):
    """A model file could not be fetched or failed verification."""


class SourceUnreachableError(DownloadError):
    """A model's host cannot be reached at all (no name resolution, connection refused, no route): every
    other model from ``host`` would fail the same way."""

    def __init__(self, message: str, host: str) -> None:
        super().__init__(message)
        self.host = host


class StdoutError(SwinIRError):
    """Standard output is closed, its reader went away, or its disk is full: nothing more can go there."""


class ModelNotFoundError(SwinIRError):
    """No registry entry or cached file matches the requested model."""


class ModelUnavailableError(BatchStopError):
    """The model a batch needs cannot be had: offline, unreachable, refused, or its file is corrupt."""


def _first(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return shown + (f" and {more} more" if more > 0 else "")
