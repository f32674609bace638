"""Fixtures shared by the test modules: a loopback weight server, an empty model cache, one compute thread.

Helpers that tests import live in ``helpers.py`` (running the command, checking its output, small
images), ``reference_data.py`` (the data in ``../shared``), ``hostile.py`` and ``batch_folders.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hostile import WeightServer


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker's PyTorch takes its share of the cores, not all of them."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of an xdist_group first (the Ray module's, a few minutes on one worker): their worker starts on
    them while the other workers share the rest, instead of the group running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


@pytest.fixture
def server() -> Iterator[WeightServer]:
    """A loopback HTTP server (``hostile.WeightServer``) serving the tiny checkpoint as ``/FILE_NAME``."""
    from hostile import FILE_NAME, TINY_BYTES, WeightServer  # skips the test without ../shared

    weight_server = WeightServer()
    weight_server.files[f"/{FILE_NAME}"] = TINY_BYTES
    yield weight_server
    weight_server.stop()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model cache (``$SWINIR_CACHE_DIR``, not made yet), online, with the built-in registry
    alone, and tables as wide as 200 columns."""
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("SWINIR_OFFLINE", "SWINIR_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    return cache_dir


@pytest.fixture
def single_thread() -> Iterator[None]:
    """PyTorch on one thread for the test (``helpers.one_thread``): the float sums of the commands, which
    compute on one thread here, bit for bit, and steady timing beside other processes."""
    from helpers import one_thread

    with one_thread():
        yield
