"""README.md is a promise: its Python example runs as shown (on a tiny model served from 127.0.0.1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import require_shared, save_rgb
from hostile import FILE_NAME, TINY_BYTES, WeightServer, register

from swinir_cli.imageio import read_image

require_shared()

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    """The code block under README's "### Python" heading."""
    section = README.read_text().split("### Python\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_the_python_example_runs_as_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer
) -> None:
    code = python_example()
    assert 'load_restorer("real-x4"' in code  # the one substitution below: a model this machine can have
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    save_rgb(tmp_path / "photo.png")
    namespace: dict[str, object] = {}
    exec(compile(code.replace('"real-x4"', '"tiny-x2"'), "README.md", "exec"), namespace)
    assert read_image(tmp_path / "photo_x4.png").pixels.shape == (40, 48, 3)  # the tiny model is x2
    assert namespace["pixels"].shape == (40, 48, 3)
