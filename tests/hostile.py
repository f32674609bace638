"""Shared test helpers for hostile conditions (not a test module): a loopback HTTP server for weight
files that misbehaves on request, a small tmpfs standing in for a full disk, and hostile files."""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import REFERENCE, require_shared

require_shared()

TINY = REFERENCE / "tiny" / "sr_pixelshuffle_x2.pth"
TINY_BYTES = TINY.read_bytes()
TINY_SHA256 = hashlib.sha256(TINY_BYTES).hexdigest()
FILE_NAME = "sr_pixelshuffle_x2.pth"


def register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, sha256: str | None = TINY_SHA256, **extra: int
) -> None:
    """Point SWINIR_REGISTRY at a file holding one entry, `tiny-x2`."""
    lines = ["[models.tiny-x2]", 'task = "upscale"', "scale = 2", f'url = "{url}"', 'description = "tiny"']
    if sha256:
        lines.append(f'sha256 = "{sha256}"')
    lines += [f"{key} = {value}" for key, value in extra.items()]
    registry = tmp_path / "extra.toml"
    registry.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SWINIR_REGISTRY", str(registry))


class WeightServer:
    """A loopback HTTP server for weight files, with switches for what a download must survive.

    Per response, in order: ``statuses`` (error statuses answered first), ``hang_up_after`` (bytes sent
    before closing). Always: ``ignore_range``, ``gate`` (held responses wait for it after the headers),
    ``trickle_s`` (seconds between single bytes of the body), ``stall_after_headers`` (send the headers,
    then nothing), ``no_content_length`` (close-delimited body), ``extra_body`` (bytes sent after the
    file), ``html_page`` (answer every request 200 with an HTML page), ``content_range`` (a fixed,
    possibly malformed ``Content-Range`` on every 206), ``raw_status_line`` (sent instead of a status
    line and headers).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.hang_up_after: list[int] = []
        self.statuses: list[int] = []
        self.ignore_range = False
        self.trickle_s: float | None = None
        self.stall_after_headers = False
        self.no_content_length = False
        self.extra_body = b""
        self.html_page: bytes | None = None
        self.content_range: str | None = None
        self.raw_status_line: bytes | None = None
        self.drip_head_s: float | None = None
        self.gate = threading.Event()
        self.gate.set()
        self._stopped = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._stopped.set()
        self.gate.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                if server.raw_status_line is not None:
                    self.wfile.write(server.raw_status_line)
                    return
                if server.drip_head_s is not None:
                    self._drip_head(server.drip_head_s)
                    return
                if server.statuses:
                    self.send_error(server.statuses.pop(0))
                    return
                if server.html_page is not None:
                    self._send(200, server.html_page, {"Content-Type": "text/html"})
                    return
                if self.path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[self.path]
                start = self._range_start()
                headers = {}
                if start:
                    headers["Content-Range"] = (
                        server.content_range or f"bytes {start}-{len(data) - 1}/{len(data)}"
                    )
                self._send(206 if start else 200, data[start:], headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if server.no_content_length:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                server.gate.wait(timeout=60)
                if server.stall_after_headers:
                    server._stopped.wait(timeout=120)
                    return
                if server.hang_up_after:
                    body = body[: server.hang_up_after.pop(0)]
                body += server.extra_body
                if server.trickle_s is None:
                    self.wfile.write(body)
                    return
                for offset in range(len(body)):
                    if server._stopped.wait(timeout=server.trickle_s):
                        return
                    self.wfile.write(body[offset : offset + 1])
                    self.wfile.flush()

            def _drip_head(self, seconds: float) -> None:
                head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 60_000
                for offset in range(len(head)):
                    if server._stopped.wait(timeout=seconds):
                        return
                    try:
                        self.wfile.write(head[offset : offset + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return

            def _range_start(self) -> int:
                header = self.headers.get("Range")
                if server.ignore_range or not header:
                    return 0
                return int(header.removeprefix("bytes=").partition("-")[0])

            def log_message(self, format: str, *args: object) -> None:
                """Keep test output quiet."""

        return Handler


@contextmanager
def full_disk(directory: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``directory`` (a real file system that fills up); the test is
    skipped, with the reason, where mounting is not allowed (it needs root, as in CI)."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a small tmpfs, and mounting one failed: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(directory)], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# Hostile files: tails that take no disk space, zip records that lie


def with_sparse_tail(path: Path, data: bytes, tail_bytes: int) -> Path:
    """``path`` holding ``data``, then ``tail_bytes`` zero bytes that take no disk space (a sparse file)."""
    with path.open("wb") as stream:
        stream.write(data)
        stream.truncate(len(data) + tail_bytes)
    return path


#: The tiny checkpoint's largest record (589,824 bytes).
LARGEST_RECORD = "sr_pixelshuffle_x2/data/72"


def zip_bomb_checkpoint(path: Path, inflated_bytes: int) -> Path:
    """The tiny checkpoint with its largest record replaced by ``inflated_bytes`` zeros, deflated: a
    file of about a thousandth of that size."""
    with zipfile.ZipFile(io.BytesIO(TINY_BYTES)) as source, zipfile.ZipFile(path, "w") as bomb:
        for record in source.infolist():
            if record.filename != LARGEST_RECORD:
                bomb.writestr(record, source.read(record))
                continue
            deflated = zipfile.ZipInfo(record.filename)
            deflated.compress_type = zipfile.ZIP_DEFLATED
            with bomb.open(deflated, "w", force_zip64=True) as stream:
                for _ in range(inflated_bytes >> 20):
                    stream.write(bytes(1 << 20))
    return path


def checkpoint_claiming(path: Path, record: str, claimed_bytes: int) -> Path:
    """The tiny checkpoint whose zip directory says ``record`` (stored, uncompressed) holds
    ``claimed_bytes``: the bytes in the file are unchanged."""
    data = bytearray(TINY_BYTES)
    entry = data.index(b"PK\x01\x02")  # the first central directory entry
    while data[entry + 46 : entry + 46 + len(record)] != record.encode():
        entry = data.index(b"PK\x01\x02", entry + 4)
    struct.pack_into("<II", data, entry + 20, claimed_bytes, claimed_bytes)  # compressed, uncompressed
    path.write_bytes(data)
    return path
