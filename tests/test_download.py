"""Verified downloads against a real HTTP server on 127.0.0.1 that each test starts.

The server serves the tiny reference checkpoint and can misbehave on request: hang up part-way, ignore
Range, answer an error status, serve other bytes, or hold every response until the test lets it go.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REFERENCE, SWINIR, require_shared, run_python, run_swinir, save_rgb
from hostile import FILE_NAME, TINY, TINY_BYTES, TINY_SHA256, WeightServer, full_disk, register
from safetensors import safe_open

from swinir_cli.checkpoint import detect_config, load_model, read_config, read_state_dict
from swinir_cli.download import DownloadProgress, DownloadRetry, fetch, verified_weights_path, verify_cached
from swinir_cli.errors import DownloadError, ModelNotFoundError, SourceUnreachableError, UsageError
from swinir_cli.imageio import read_image
from swinir_cli.registry import get_model

require_shared()

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(cache: Path) -> Path:
    """The folder of entry `tiny-x2` in the empty cache of conftest.py's ``cache`` (its parent)."""
    return cache / "tiny-x2"


@pytest.fixture
def tiny_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path):
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
    return get_model("tiny-x2")


def cache_listing(cache: Path) -> list[str]:
    """The cache's files, without the lock folder (lock files stay: removing one is not safe)."""
    return sorted(p.name for p in cache.iterdir() if p.name != ".locks") if cache.exists() else []


def test_download_verifies_and_reports_progress(tiny_entry, server: WeightServer, cache: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    path = fetch(tiny_entry, progress=lambda done, total: calls.append((done, total)))
    assert path == cache / FILE_NAME
    assert path.read_bytes() == TINY_BYTES
    assert calls[0] == (0, len(TINY_BYTES)) and calls[-1] == (len(TINY_BYTES), len(TINY_BYTES))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert server.requests == [(f"/{FILE_NAME}", None)]
    assert cache_listing(cache) == [FILE_NAME]  # no .part, no lock file left


def test_cached_model_works_with_the_server_stopped(tiny_entry, server: WeightServer, cache: Path) -> None:
    first = fetch(tiny_entry)
    server.stop()
    assert fetch(tiny_entry) == first
    assert verified_weights_path(tiny_entry).is_file()


def test_wrong_sha256_is_deleted_and_reported_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256="0" * 64)
    with pytest.raises(DownloadError) as caught:
        fetch(get_model("tiny-x2"))
    message = str(caught.value)
    assert "\n" not in message
    assert "tiny-x2" in message and "0" * 64 in message and TINY_SHA256 in message
    assert cache_listing(cache) == []


def test_server_serving_other_bytes_is_caught_by_size_before_hashing(tiny_entry, server, cache) -> None:
    server.files[f"/{FILE_NAME}"] = TINY_BYTES[:-10]
    with pytest.raises(DownloadError, match=f"serves {len(TINY_BYTES) - 10} bytes, expected"):
        fetch(tiny_entry)
    assert cache_listing(cache) == []


def test_hang_up_part_way_is_resumed_with_a_range_request(tiny_entry, server: WeightServer) -> None:
    server.hang_up_after = [500_000, 300_000]
    path = fetch(tiny_entry, backoff_s=0)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == TINY_SHA256
    assert [header for _, header in server.requests] == [None, "bytes=500000-", "bytes=800000-"]


def test_partial_file_of_an_interrupted_process_is_resumed(tiny_entry, server: WeightServer, cache) -> None:
    cache.mkdir(parents=True)
    (cache / f"{FILE_NAME}.part").write_bytes(TINY_BYTES[:700_000])
    path = fetch(tiny_entry)
    assert path.read_bytes() == TINY_BYTES
    assert server.requests == [(f"/{FILE_NAME}", "bytes=700000-")]


def test_server_ignoring_range_restarts_from_the_start(tiny_entry, server: WeightServer) -> None:
    server.ignore_range = True
    server.hang_up_after = [400_000]
    assert fetch(tiny_entry, backoff_s=0).read_bytes() == TINY_BYTES
    assert len(server.requests) == 2


def test_not_found_is_a_clear_error_without_retries(
    tmp_path, monkeypatch, server: WeightServer, cache
) -> None:
    url = f"{server.base_url}/missing.pth"
    register(tmp_path, monkeypatch, url)
    with pytest.raises(DownloadError, match=f"{url} answered HTTP 404"):
        fetch(get_model("tiny-x2"), backoff_s=0)
    assert len(server.requests) == 1
    assert cache_listing(cache) == []


def test_temporary_server_errors_are_retried(tiny_entry, server: WeightServer) -> None:
    server.statuses = [503, 502]
    assert fetch(tiny_entry, backoff_s=0).read_bytes() == TINY_BYTES
    assert len(server.requests) == 3


def test_a_refused_connection_is_retried_once_then_one_line_saying_how_to_proceed(
    tiny_entry, server: WeightServer, cache: Path
) -> None:
    server.stop()  # nothing listens on its port any more: the connection is refused
    events: list[object] = []
    started = time.monotonic()
    with pytest.raises(SourceUnreachableError) as caught:
        fetch(tiny_entry, events=events.append)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "\n" not in message and caught.value.host == "127.0.0.1"
    assert (
        "cannot download model 'tiny-x2': 127.0.0.1 cannot be reached (connection refused); offline?"
        in message
    )
    assert f"run `swinir download tiny-x2` where the network is reachable or copy {FILE_NAME} " in message
    assert f"to {cache / FILE_NAME}, or pass --weights FILE" in message
    retries = [event for event in events if isinstance(event, DownloadRetry)]
    assert len(retries) == 1 and retries[0].last
    assert not (cache / FILE_NAME).exists()


def test_a_host_name_that_does_not_resolve_is_retried_once_then_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    """Offline, name resolution fails (the resolver is stood in for: the internet cannot be reached here)."""
    lookups: list[str] = []

    def no_resolution(host: str, *args: object, **kwargs: object) -> None:
        lookups.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_resolution)
    register(tmp_path, monkeypatch, f"https://weights.example/{FILE_NAME}")
    with pytest.raises(
        SourceUnreachableError, match=r"weights.example cannot be reached \(its name does not"
    ):
        fetch(get_model("tiny-x2"))
    assert lookups == ["weights.example"] * 2


def test_two_processes_download_once_and_both_succeed(tiny_entry, server: WeightServer, cache: Path) -> None:
    server.gate.clear()  # hold the first transfer open until the second process waits for it
    script = (
        "import sys; from swinir_cli.download import fetch; from swinir_cli.registry import get_model; "
        "print(fetch(get_model('tiny-x2'), events=lambda e: print(type(e).__name__, file=sys.stderr)))"
    )
    command = [sys.executable, "-c", script]
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    processes = [first, second]
    # Its first line, however long its start takes on a loaded machine (the gate opens by itself in 60 s).
    assert second.stderr.readline() == "DownloadWaiting\n"  # type: ignore[union-attr]
    assert [p.poll() for p in processes] == [None, None]
    server.gate.set()
    outputs = [p.communicate(timeout=60)[0].strip() for p in processes]
    assert [p.returncode for p in processes] == [0, 0]
    assert outputs == [str(cache / FILE_NAME)] * 2
    assert len(server.requests) == 1
    assert cache_listing(cache) == [FILE_NAME]
    assert (cache / FILE_NAME).read_bytes() == TINY_BYTES


def test_offline_with_nothing_cached_names_the_model_and_never_connects(
    tiny_entry, server: WeightServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWINIR_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as caught:
        fetch(tiny_entry)
    message = str(caught.value)
    assert "swinir download tiny-x2" in message and str(cache / FILE_NAME) in message
    assert server.requests == []


def test_offline_uses_the_cached_file(tiny_entry, server: WeightServer, monkeypatch) -> None:
    path = fetch(tiny_entry)
    monkeypatch.setenv("SWINIR_OFFLINE", "1")
    assert fetch(tiny_entry) == path
    assert len(server.requests) == 1


def test_corrupt_cached_file_is_replaced_by_a_fresh_download(tiny_entry, server: WeightServer) -> None:
    path = fetch(tiny_entry)
    path.write_bytes(b"x" * len(TINY_BYTES))
    assert fetch(tiny_entry).read_bytes() == TINY_BYTES
    assert len(server.requests) == 2


def test_unpinned_entry_records_the_first_hash_and_checks_it_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256=None)
    entry = get_model("tiny-x2")
    assert not entry.pinned
    path = fetch(entry)
    record = cache / f"{FILE_NAME}.sha256"
    assert record.read_text() == f"{TINY_SHA256}  {FILE_NAME}\n"
    path.write_bytes(b"tampered")  # the cached file changes...
    server.files[f"/{FILE_NAME}"] = TINY_BYTES[::-1]  # ...and so does the source
    with pytest.raises(DownloadError, match=f"expected {TINY_SHA256} \\(recorded in"):
        fetch(entry)
    assert cache_listing(cache) == [f"{FILE_NAME}.sha256"]


def test_local_mirror_path_is_copied_verified_and_allowed_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    (tmp_path / "mirror").mkdir()
    shutil.copyfile(TINY, tmp_path / "mirror" / FILE_NAME)
    register(tmp_path, monkeypatch, f"mirror/{FILE_NAME}")
    monkeypatch.setenv("SWINIR_OFFLINE", "1")
    assert fetch(get_model("tiny-x2")).read_bytes() == TINY_BYTES


def test_safetensors_copy_holds_the_same_tensors_and_gives_bit_identical_outputs(tiny_entry) -> None:
    copy = verified_weights_path(tiny_entry)
    assert copy.name == "sr_pixelshuffle_x2.safetensors"
    with safe_open(str(copy), framework="pt") as handle:
        assert handle.metadata()["source_sha256"] == TINY_SHA256
    from_pth, from_copy = read_state_dict(TINY), read_state_dict(copy)
    assert from_pth.keys() == from_copy.keys()
    assert all(
        torch.equal(from_pth[k], from_copy[k]) and from_pth[k].dtype == from_copy[k].dtype for k in from_pth
    )
    x = torch.from_numpy(np.load(REFERENCE / "tiny" / "sr_pixelshuffle_x2.npz")["x_odd"])
    with torch.no_grad():
        assert torch.equal(load_model(TINY)(x), load_model(copy)(x))


def test_the_architecture_of_a_copy_read_from_its_header_is_that_of_the_published_file(tiny_entry) -> None:
    copy = verified_weights_path(tiny_entry)
    assert read_config(copy) == read_config(TINY) == detect_config(read_state_dict(TINY))


def test_safetensors_copy_is_reused_and_rebuilt_when_it_does_not_match(tiny_entry) -> None:
    copy = verified_weights_path(tiny_entry)
    written = copy.stat().st_mtime_ns
    assert verified_weights_path(tiny_entry).stat().st_mtime_ns == written
    copy.write_bytes(b"not safetensors")
    assert verified_weights_path(tiny_entry) == copy
    assert read_state_dict(copy).keys() == read_state_dict(TINY).keys()


def test_verify_cached_reports_missing_good_and_corrupt_files(tiny_entry, cache: Path) -> None:
    assert not verify_cached(tiny_entry).cached
    verified_weights_path(tiny_entry)
    good = verify_cached(tiny_entry)
    assert good.cached and good.problem is None and good.sha256 == TINY_SHA256
    (cache / FILE_NAME).write_bytes(b"bitrot")
    bad = verify_cached(tiny_entry)
    assert bad.problem is not None and "does not match" in bad.problem
    assert cache_listing(cache) == []  # the corrupt file and its safetensors copy are gone


class FakeHub:
    """Stands in for huggingface_hub.hf_hub_download: the Hugging Face Hub cannot be reached from here."""

    def __init__(self, tmp_path: Path, data: bytes) -> None:
        self.calls: list[dict] = []
        self.path = tmp_path / "hub" / FILE_NAME
        self.path.parent.mkdir()
        self.path.write_bytes(data)

    def __call__(self, repo_id: str, filename: str, **options) -> str:
        from huggingface_hub.errors import LocalEntryNotFoundError

        self.calls.append({"repo_id": repo_id, "filename": filename, **options})
        if options["local_files_only"] and not self.calls[:-1]:
            raise LocalEntryNotFoundError("not in the local cache")
        return str(self.path)


@pytest.mark.parametrize("data, ok", [(TINY_BYTES, True), (b"something else", False)])
def test_hub_source_is_fetched_through_huggingface_hub_and_hash_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path, data: bytes, ok: bool
) -> None:
    import huggingface_hub

    hub = FakeHub(tmp_path, data)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    register(tmp_path, monkeypatch, f"hf://someone/swinir@v1/weights/{FILE_NAME}")
    entry = get_model("tiny-x2")
    if ok:
        assert fetch(entry) == hub.path
    else:
        with pytest.raises(DownloadError, match="not used"):
            fetch(entry)
    assert hub.calls == [
        {
            "repo_id": "someone/swinir",
            "filename": f"weights/{FILE_NAME}",
            "revision": "v1",
            "local_files_only": False,
        }
    ]


def test_hub_source_offline_and_not_cached_is_a_clear_error(tmp_path, monkeypatch, cache: Path) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(tmp_path, TINY_BYTES))
    register(tmp_path, monkeypatch, f"hf://someone/swinir/{FILE_NAME}")
    with pytest.raises(ModelNotFoundError, match="swinir download tiny-x2"):
        fetch(get_model("tiny-x2"), offline=True)


def test_lock_file_left_by_a_dead_process_does_not_block(tiny_entry, cache: Path) -> None:
    cache.mkdir(parents=True)
    (cache / ".locks").mkdir()
    (cache / ".locks" / f"{FILE_NAME}.lock").write_text("12345")  # a stale lock file: nobody holds its flock
    assert fetch(tiny_entry).read_bytes() == TINY_BYTES
    assert cache_listing(cache) == [FILE_NAME]


def test_module_does_not_print(tiny_entry, capsys: pytest.CaptureFixture[str]) -> None:
    verified_weights_path(tiny_entry)
    assert capsys.readouterr() == ("", "")


def test_unwritable_cache_is_a_clear_error(tiny_entry, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(
        DownloadError, match=re.escape(f"cannot store model 'tiny-x2' in the cache {blocker}")
    ):
        fetch(tiny_entry)


# ------------------------------------------------------------------------------------------------
# What is loaded is what was verified


def zero_tensor_bytes(path: Path) -> None:
    """Overwrite every tensor byte of a safetensors file with zeros, keeping its header (and metadata)."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = bytes(len(data) - header)
    path.write_bytes(bytes(data))


def test_a_copy_with_zeroed_tensors_is_rebuilt_before_it_is_loaded(tiny_entry, cache: Path) -> None:
    copy = verified_weights_path(tiny_entry)
    zero_tensor_bytes(copy)
    assert _safetensors_metadata(copy)["source_sha256"] == TINY_SHA256  # the tag alone cannot tell
    assert verified_weights_path(tiny_entry) == copy
    rebuilt, published = read_state_dict(copy), read_state_dict(TINY)
    assert all(torch.equal(rebuilt[name], published[name]) for name in published)


def test_models_verify_finds_a_tampered_copy_and_the_next_run_rebuilds_it(tiny_entry, cache: Path) -> None:
    copy = verified_weights_path(tiny_entry)
    zero_tensor_bytes(copy)
    result = run_swinir("models", "--verify", text=True)
    assert result.returncode == 1
    assert "1 cached model file(s) failed verification and were deleted: tiny-x2" in result.stderr
    assert not copy.exists() and (cache / FILE_NAME).is_file()  # the verified source stays
    check = verify_cached(tiny_entry)
    assert check.cached and check.problem is None
    verified_weights_path(tiny_entry)
    assert verify_cached(tiny_entry).problem is None


def _safetensors_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


HTML_PAGE = b"<!doctype html><html><body>Please log in to download this file.</body></html>"


def test_an_html_page_is_never_recorded_as_an_unpinned_model_and_a_later_good_download_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256=None)
    entry = get_model("tiny-x2")
    server.html_page = HTML_PAGE
    with pytest.raises(DownloadError) as caught:
        verified_weights_path(entry)
    assert "did not send a checkpoint" in str(caught.value) and "\n" not in str(caught.value)
    assert cache_listing(cache) == []  # no file, no recorded hash
    server.html_page = None
    assert read_state_dict(verified_weights_path(entry)).keys() == read_state_dict(TINY).keys()
    assert (cache / f"{FILE_NAME}.sha256").read_text().split()[0] == TINY_SHA256


def test_a_cache_poisoned_by_an_older_version_is_repaired_by_a_good_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256=None)
    cache.mkdir(parents=True)
    (cache / FILE_NAME).write_bytes(HTML_PAGE)  # what the older version kept, with its hash recorded
    (cache / f"{FILE_NAME}.sha256").write_text(f"{hashlib.sha256(HTML_PAGE).hexdigest()}  {FILE_NAME}\n")
    assert read_state_dict(verified_weights_path(get_model("tiny-x2"))).keys() == read_state_dict(TINY).keys()
    assert (cache / FILE_NAME).read_bytes() == TINY_BYTES
    assert (cache / f"{FILE_NAME}.sha256").read_text().split()[0] == TINY_SHA256


# ------------------------------------------------------------------------------------------------
# Writes that do not complete are failures; cache files keep the download's permissions


def test_cache_files_have_the_permissions_of_the_downloaded_file(tiny_entry, cache: Path) -> None:
    previous = os.umask(0o022)
    try:
        copy = verified_weights_path(tiny_entry)
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in cache.iterdir() if p.is_file()}
    assert modes == {name: 0o644 for name in modes} and copy.name in modes and len(modes) == 3


def test_a_full_disk_while_writing_the_copy_is_a_one_line_error_leaving_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer
) -> None:
    with full_disk(tmp_path / "disk", size=f"{len(TINY_BYTES) + 400_000}") as disk:
        monkeypatch.setenv("SWINIR_CACHE_DIR", str(disk))
        register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}")
        result = run_swinir("download", "tiny-x2", text=True)
        assert result.returncode == 1
        first = result.stderr.splitlines()[0]
        assert (
            f"cannot store model 'tiny-x2' in the cache {disk / 'tiny-x2'}: No space left on device" in first
        )
        assert "sr_pixelshuffle_x2.safetensors" in first
        assert "Traceback" not in result.stderr
        assert cache_listing(disk / "tiny-x2") == [
            FILE_NAME
        ]  # the verified download; no partial copy, no temporary


def test_a_read_only_cache_serves_its_verified_files_and_refuses_new_ones_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer
) -> None:
    with full_disk(tmp_path / "ro", size="16m") as disk:
        monkeypatch.setenv("SWINIR_CACHE_DIR", str(disk))
        register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
        entry = get_model("tiny-x2")
        fetch(entry)  # verified, but never converted
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        assert verified_weights_path(entry) == disk / "tiny-x2" / FILE_NAME  # loads the verified .pth itself
        register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256=None)  # needs a record
        result = run_swinir("models", "--verify", text=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "read-only file system" in result.stderr.lower()


def test_a_recorded_hash_file_of_binary_bytes_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256=None)
    fetch(get_model("tiny-x2"))
    record = cache / f"{FILE_NAME}.sha256"
    record.write_bytes(b"\xff\xfe\x00garbage\x80")
    result = run_swinir("download", "tiny-x2", text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{record} is not a sha256 record" in result.stderr


# ------------------------------------------------------------------------------------------------
# Downloads are bounded in size and time


def test_a_body_longer_than_the_pinned_size_without_content_length_stops_at_the_size(
    tiny_entry, server: WeightServer, cache: Path
) -> None:
    server.no_content_length = True
    server.extra_body = b"\x00" * 3_000_000
    assert fetch(tiny_entry).read_bytes() == TINY_BYTES


def test_a_body_without_content_length_for_an_unsized_entry_ends_with_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}")
    server.no_content_length = True
    assert fetch(get_model("tiny-x2")).read_bytes() == TINY_BYTES


def given_up_quickly(tiny_entry, seconds: float) -> tuple[str, list[object]]:
    """The one-line error of a fetch with one retry and 1 s per attempt, which must end within ``seconds``,
    and the events it reported."""
    events: list[object] = []
    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        fetch(tiny_entry, events=events.append, retries=1, backoff_s=0, timeout_s=1.0)
    assert time.monotonic() - started < seconds
    message = str(caught.value)
    assert "\n" not in message and "gave up after 2 attempts without progress" in message
    return message, events


def test_a_trickling_server_is_retried_visibly_then_given_up_on_one_line(
    tiny_entry, server: WeightServer
) -> None:
    server.trickle_s = 0.2
    message, events = given_up_quickly(tiny_entry, 20)
    assert "the server sent only" in message
    retries = [event for event in events if isinstance(event, DownloadRetry)]
    assert [event.attempt for event in retries] == [1] and retries[0].model == "tiny-x2"
    assert any(isinstance(event, DownloadProgress) and event.done > 0 for event in events)


@pytest.mark.parametrize("misbehaviour", ["trickle_s", "stall_after_headers"])
def test_the_overall_deadline_gives_up_on_one_line_showing_the_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path, misbehaviour: str
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
    setattr(server, misbehaviour, 0.3 if misbehaviour == "trickle_s" else True)
    monkeypatch.setenv("SWINIR_DOWNLOAD_TIMEOUT", "3")
    started = time.monotonic()
    result = run_swinir("download", "tiny-x2", text=True)
    elapsed = time.monotonic() - started
    assert result.returncode == 1 and elapsed < 30, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "gave up after 3 s" in errors[0] and "SWINIR_DOWNLOAD_TIMEOUT" in errors[0]
    assert "Traceback" not in result.stderr


def test_an_invalid_download_timeout_is_a_usage_error(tiny_entry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWINIR_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="SWINIR_DOWNLOAD_TIMEOUT='soon': expected a positive number"):
        fetch(tiny_entry)


def test_a_malformed_content_range_is_a_one_line_error(tiny_entry, server: WeightServer, cache: Path) -> None:
    server.hang_up_after = [500_000]
    server.content_range = "bytes five-hundred/lots"
    with pytest.raises(DownloadError) as caught:
        fetch(tiny_entry, backoff_s=0)
    assert "malformed Content-Range 'bytes five-hundred/lots'" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_malformed_status_line_is_a_one_line_error(tiny_entry, server: WeightServer) -> None:
    server.raw_status_line = b"HTTP/1.1 TWO-HUNDRED OK\r\n\r\n"
    with pytest.raises(DownloadError) as caught:
        fetch(tiny_entry, retries=1, backoff_s=0)
    message = str(caught.value)
    assert "malformed HTTP status line" in message and "gave up after 2 attempts" in message
    assert "\n" not in message


def test_a_waiting_second_process_says_what_it_waits_for(
    tiny_entry, server: WeightServer, cache: Path
) -> None:
    server.gate.clear()  # hold the first transfer open until the second process is waiting
    first = subprocess.Popen([str(SWINIR), "download", "tiny-x2"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.Popen([str(SWINIR), "download", "tiny-x2"], stderr=subprocess.PIPE, text=True)
    # Its first line, however long its start takes on a loaded machine (the gate opens by itself in 60 s).
    said = second.stderr.readline()  # type: ignore[union-attr]
    server.gate.set()
    _, first_err = first.communicate(timeout=60)
    _, second_err = second.communicate(timeout=60)
    assert (first.returncode, second.returncode) == (0, 0), first_err + said + second_err
    assert said == f"tiny-x2: waiting for another process downloading {cache / FILE_NAME}\n"
    assert len(server.requests) == 1


def test_the_package_imports_no_posix_only_module(tmp_path: Path) -> None:
    """Windows has no fcntl, termios, pwd, grp or resource: importing any of them at import time would
    break every Windows user. Here they are made unimportable before the package is imported."""
    script = """
import sys
for name in ("fcntl", "termios", "pwd", "grp", "resource"):
    sys.modules[name] = None
import pkgutil, importlib, swinir_cli
for module in pkgutil.walk_packages(swinir_cli.__path__, "swinir_cli."):
    if module.name != "swinir_cli.__main__":
        importlib.import_module(module.name)
from swinir_cli import cache_records
print(cache_records.FileLock.__name__)
"""
    result = run_python(script)
    assert result.returncode == 0, result.stderr


def test_a_full_disk_during_the_download_is_a_one_line_error_naming_the_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer
) -> None:
    with full_disk(tmp_path / "disk", size="512k") as disk:
        monkeypatch.setenv("SWINIR_CACHE_DIR", str(disk))
        register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
        with pytest.raises(DownloadError) as caught:
            fetch(get_model("tiny-x2"), backoff_s=0)
        message = str(caught.value)
        assert (
            f"cannot store model 'tiny-x2' in the cache {disk / 'tiny-x2'}: No space left on device"
            in message
        )
        assert f"{FILE_NAME}.part" in message and "\n" not in message


def test_an_unpinned_safetensors_entry_is_checked_as_safetensors_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    from safetensors.torch import save

    data = save({name: tensor.contiguous() for name, tensor in read_state_dict(TINY).items()})
    server.files["/tiny.safetensors"] = data
    register(tmp_path, monkeypatch, f"{server.base_url}/tiny.safetensors", sha256=None)
    path = verified_weights_path(get_model("tiny-x2"))
    assert path == cache / "tiny.safetensors" and path.read_bytes() == data
    assert (cache / "tiny.safetensors.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()


def test_status_line_and_headers_dripped_a_byte_at_a_time_are_cut_at_the_head_time(
    tiny_entry, server: WeightServer
) -> None:
    server.drip_head_s = 0.05
    message, _ = given_up_quickly(tiny_entry, 10)
    assert "no complete status line and headers within 1 s" in message


def test_status_line_and_headers_dripped_a_byte_at_a_time_stop_at_the_deadline(
    tiny_entry, server: WeightServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole exchange is bounded: the process gives up at SWINIR_DOWNLOAD_TIMEOUT, lock released."""
    server.drip_head_s = 0.05
    monkeypatch.setenv("SWINIR_DOWNLOAD_TIMEOUT", "2")
    started = time.monotonic()
    result = run_swinir("download", "tiny-x2", text=True)
    assert result.returncode == 1 and time.monotonic() - started < 60, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "gave up after 2 s" in errors[0]
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------
# Each entry has its own cache files, and weights must fit their entry


def register_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, tuple[int, str]]
) -> None:
    """Point SWINIR_REGISTRY at unpinned upscale entries: name -> (scale, url)."""
    lines = []
    for name, (scale, url) in entries.items():
        lines += [f"[models.{name}]", 'task = "upscale"', f"scale = {scale}", f'url = "{url}"']
    (tmp_path / "extra.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SWINIR_REGISTRY", str(tmp_path / "extra.toml"))


def test_entries_whose_urls_end_in_the_same_file_name_never_share_a_cache_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    x4 = (REFERENCE / "tiny" / "sr_pixelshuffle_x4.pth").read_bytes()
    server.files["/x2/weights.pth"], server.files["/x4/weights.pth"] = TINY_BYTES, x4
    register_entries(
        tmp_path,
        monkeypatch,
        {
            "mine-x4": (4, f"{server.base_url}/x4/weights.pth"),
            "mine-x2": (2, f"{server.base_url}/x2/weights.pth"),
        },
    )
    first = verified_weights_path(get_model("mine-x4"))
    second = verified_weights_path(get_model("mine-x2"))
    assert first != second and first.parent.name == "mine-x4" and second.parent.name == "mine-x2"
    assert load_model(first).config.upscale == 4 and load_model(second).config.upscale == 2
    assert len(server.requests) == 2


def test_weights_that_do_not_fit_their_entry_are_refused_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    server.files["/weights.pth"] = (REFERENCE / "tiny" / "sr_pixelshuffle_x4.pth").read_bytes()
    register_entries(tmp_path, monkeypatch, {"mine-x2": (2, f"{server.base_url}/weights.pth")})
    with pytest.raises(DownloadError) as caught:
        verified_weights_path(get_model("mine-x2"))
    message = str(caught.value)
    assert message.startswith("model 'mine-x2': its weights ") and "\n" not in message
    assert "make x4 color results, but the registry entry declares upscale x2 on x2 color images" in message
    save_rgb(tmp_path / "photo.png")
    result = run_swinir("upscale", "photo.png", "-m", "mine-x2", cwd=tmp_path, text=True)
    assert result.returncode == 1 and not (tmp_path / "photo_x2.png").exists()
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [f"error: {message}"]


def test_a_pinned_file_of_the_flat_layout_of_earlier_versions_is_moved_into_its_entry_folder(
    tiny_entry, server: WeightServer, cache: Path
) -> None:
    cache.parent.mkdir()
    (cache.parent / FILE_NAME).write_bytes(TINY_BYTES)
    assert fetch(tiny_entry) == cache / FILE_NAME
    assert server.requests == [] and not (cache.parent / FILE_NAME).exists()


def test_a_model_folder_copied_to_an_offline_machine_is_used_as_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    """README's offline recipe: `swinir download NAME` where there is a network prints the file's path;
    the model's folder, the `.pth` alone, copied under another cache serves `SWINIR_OFFLINE=1` runs."""
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
    downloaded = run_swinir("download", "tiny-x2")
    assert downloaded.returncode == 0, downloaded.stderr
    assert str(cache / FILE_NAME) in downloaded.stdout.decode() + downloaded.stderr.decode()
    server.stop()
    other_cache = tmp_path / "offline-cache"
    (other_cache / "tiny-x2").mkdir(parents=True)
    shutil.copy(cache / FILE_NAME, other_cache / "tiny-x2" / FILE_NAME)
    save_rgb(tmp_path / "photo.png")
    offline = {"SWINIR_CACHE_DIR": str(other_cache), "SWINIR_OFFLINE": "1"}
    result = run_swinir("upscale", "photo.png", "-m", "tiny-x2", cwd=tmp_path, env=offline)
    assert result.returncode == 0, result.stderr
    assert read_image(tmp_path / "photo_x2.png").pixels.shape == (40, 48, 3)


def test_a_fifo_where_a_hash_record_is_expected_is_refused_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    register(tmp_path, monkeypatch, f"http://127.0.0.1:9/{FILE_NAME}", sha256=None)
    cache.mkdir(parents=True)
    (cache / FILE_NAME).write_bytes(TINY_BYTES)
    os.mkfifo(cache / f"{FILE_NAME}.sha256")  # opening it for reading would wait for a writer forever
    outcome: list[BaseException | None] = []

    def check() -> None:
        try:
            verify_cached(get_model("tiny-x2"))
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(30)
    assert outcome, "still waiting for a writer to the hash record"
    assert isinstance(outcome[0], DownloadError)
    assert str(outcome[0]) == (
        f"model 'tiny-x2': cannot read the recorded hash {cache / FILE_NAME}.sha256: "
        "is a FIFO, not a regular file"
    )
