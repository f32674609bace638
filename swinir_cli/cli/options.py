"""Parsing of option values that several commands share."""

from __future__ import annotations

from ..errors import UsageError
from ..registry import AUTO


def parse_tile(value: str) -> int | None:
    """``--tile``: a side in input pixels, 0 for the whole image, or ``auto`` (None: fit the memory).

    Raises:
        UsageError: not a non-negative number or ``auto``.
    """
    if value == AUTO:
        return None
    try:
        tile = int(value)
    except ValueError:
        raise UsageError(f"--tile must be a number of pixels or 'auto', not {value!r}") from None
    if tile < 0:
        raise UsageError(f"--tile must not be negative, got {tile}")
    return tile
