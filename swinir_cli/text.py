"""File names in messages and in ``--json``: shown so that no name can act on the terminal or split a line,
and identified exactly even when they are not UTF-8. Imports nothing from the rest of the project.

Python holds a name that is not UTF-8 with each undecodable byte as a lone surrogate (``surrogateescape``),
which no terminal can show and no strict JSON reader takes; a control character (ESC, a newline) in a name
would reach the terminal raw.
"""

from __future__ import annotations

import base64
import os
import re

# C0 and C1 controls, DEL, lone surrogates (undecodable bytes), line and paragraph separators, and the
# bidirectional overrides that can make a name read as another.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # the undecodable byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character, undecodable byte and direction override written as an
    escape (``\\x1b``, ``\\x0a``, ``\\xff``, ``\\u202e``): one line, inert on any terminal."""
    return _UNPRINTABLE.sub(_escaped, text)


def valid_unicode(text: str) -> str:
    """``text`` with each undecodable byte written as ``\\xNN``: a string any JSON reader takes."""
    return _SURROGATE.sub(_escaped, text)


def json_name(key: str, name: str | None) -> dict[str, str | None]:
    """The ``--json`` field ``key`` for the file name ``name``: the name itself, or, when it is not
    UTF-8, its :func:`valid_unicode` form plus ``<key>_bytes``, the name's exact bytes in base64."""
    if name is None or not _SURROGATE.search(name):
        return {key: name}
    raw = os.fsencode(name)
    return {key: valid_unicode(name), f"{key}_bytes": base64.b64encode(raw).decode("ascii")}
