"""What a result was made from, recorded inside the result itself.

Every output swinir writes in a format that carries metadata (PNG, JPEG, WebP, TIFF) holds one
:class:`Provenance` as compact JSON (:mod:`swinir_cli.imageio` stores and reads it): the input's file name
(never its path: outputs get shared), its size and sha256, a hash of where the input was (its resolved
path, hashed, so an input changed in place is told apart from another input of the same name) and a
fingerprint of the settings that change pixels (:func:`settings_fingerprint`). A later run compares it with
its own job to skip, redo or refuse an existing output. Imports only the ground floor's
:mod:`swinir_cli.reading`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from .reading import open_regular

__all__ = ["ContentId", "Provenance", "place_of", "settings_fingerprint"]

#: The version of the recorded JSON; a record of another version is not understood (treated as absent).
VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ContentId:
    """What identifies a file's content: its size in bytes and its sha256 (hex)."""

    size: int
    sha256: str

    def __post_init__(self) -> None:
        if self.size < 0 or not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"not a content id: {self.size} bytes, sha256 {self.sha256!r}")

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> ContentId:
        return cls(len(memoryview(data).cast("B")), hashlib.sha256(data).hexdigest())

    @classmethod
    def of_file(cls, path: Path) -> ContentId:
        """The content id of the regular file at ``path``, opened without blocking.

        Raises:
            OSError: the file cannot be read, or is not a regular file.
        """
        with open_regular(path) as stream:
            return cls.of_stream(stream)

    @classmethod
    def of_stream(cls, stream: BinaryIO) -> ContentId:
        """The content id of what ``stream`` holds from its start, read in 1 MiB blocks (memory stays
        bounded whatever the size)."""
        stream.seek(0)
        digest = hashlib.sha256()
        size = 0
        while block := stream.read(1 << 20):
            digest.update(block)
            size += len(block)
        return cls(size, digest.hexdigest())


@dataclass(frozen=True)
class Provenance:
    """One output's record: made from ``input`` (a file name, ``<stdin>`` for standard input) whose
    content was ``content``, found at the place hashed as ``place`` (:func:`place_of`; ``""`` for
    standard input), with the settings fingerprinted as ``settings``."""

    input: str
    content: ContentId
    place: str
    settings: str

    def __post_init__(self) -> None:
        if not self.input or "/" in self.input or (self.place and not _HEX64.fullmatch(self.place)):
            raise ValueError(f"not a provenance record: input {self.input!r}, place {self.place!r}")

    def to_text(self) -> str:
        """Compact JSON, keys sorted."""
        record = {"swinir": VERSION, "input": self.input, **asdict(self.content), "place": self.place}
        return json.dumps({**record, "settings": self.settings}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> Provenance | None:
        """The record in ``text``; None when it is not one this version wrote."""
        try:
            record = json.loads(text)
            if not isinstance(record, dict) or record.get("swinir") != VERSION:
                return None
            size, sha256 = record["size"], record["sha256"]
            if not isinstance(size, int) or not isinstance(sha256, str):
                return None
            fields = (record["input"], record["place"], record["settings"])
            if not all(isinstance(value, str) for value in fields):
                return None
            return cls(fields[0], ContentId(size, sha256), fields[1], fields[2])
        except (ValueError, KeyError, TypeError, RecursionError):
            return None


def place_of(path: Path) -> str:
    """The sha256 of ``path`` resolved: says whether two records name the same file, without naming it."""
    return hashlib.sha256(os.fsencode(path.resolve())).hexdigest()


def settings_fingerprint(settings: Mapping[str, object]) -> str:
    """The sha256 of ``settings`` as canonical JSON (keys sorted, no spaces; other values as strings)."""
    canonical = json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
