"""The registry: the 31 released checkpoints by name, overrides, validation, model choice, cache location."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import needs_shared, official_models

from swinir_cli.errors import ModelNotFoundError, UsageError
from swinir_cli.registry import cache_dir, choose_model, get_model, load_registry
from swinir_cli.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
ISSUE_EXAMPLES = [
    "classical-x4",
    "classical-x4-div2k",
    "lightweight-x4",
    "real-x4",
    "real-x4-psnr",
    "real-large-x4",
    "denoise-color-25",
    "denoise-gray-50",
    "dejpeg-color-10",
    "dejpeg-gray-40",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SWINIR_REGISTRY", "SWINIR_CACHE_DIR", "XDG_CACHE_HOME", "SWINIR_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def write_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "extra.toml"
    path.write_text(text)
    monkeypatch.setenv("SWINIR_REGISTRY", str(path))
    return path


@needs_shared
def test_every_released_file_has_an_entry_with_its_pinned_hash_and_size() -> None:
    by_file = {entry.file: entry for entry in load_registry().values()}
    rows = official_models()
    assert len(rows) == 31 and len(by_file) == 31
    for row in rows:
        entry = by_file[row["file"]]
        assert entry.url == row["url"]
        assert entry.sha256 == row["sha256"] and entry.size == row["size"]
        assert entry.pinned == (row["sha256"] is not None)
        assert entry.parameters == row["parameters"]
        assert entry.channels == row["config"]["in_chans"]
        if entry.task == "upscale":
            assert entry.scale == row["config"]["upscale"]
        else:
            assert row["config"]["upsampler"] == "" and str(entry.level) in row["file"]
        assert entry.task == {"001": "upscale", "002": "upscale", "003": "upscale"}.get(
            row["file"][:3], "denoise" if row["file"][:3] in ("004", "005") else "dejpeg"
        )


def test_names_follow_the_documented_scheme() -> None:
    registry = load_registry()
    assert set(ISSUE_EXAMPLES) <= set(registry)
    scheme = re.compile(
        r"(classical-x\d(-div2k)?|lightweight-x\d|real(-large)?-x\d(-psnr)?"
        r"|denoise-(gray|color)-\d+|dejpeg-(gray|color)-\d+)"
    )
    assert all(scheme.fullmatch(name) for name in registry)
    header = (REPO / "weights.toml").read_text().split("\n[models.")[0]
    assert "Naming scheme" in header and "SWINIR_REGISTRY" in header


def test_gan_and_psnr_real_world_models_are_told_apart() -> None:
    registry = load_registry()
    assert registry["real-x4"].file.endswith("_GAN.pth")
    assert registry["real-x4-psnr"].file.endswith("_PSNR.pth")
    assert registry["real-large-x4"].architecture == "SwinIR-L"
    assert "DF2K" in registry["classical-x4"].file and "DIV2K" in registry["classical-x4-div2k"].file


@pytest.mark.parametrize(
    "task, options, expected",
    [
        ("upscale", {"scale": 2}, "real-x2"),
        ("upscale", {"scale": 4}, "real-x4"),
        ("upscale", {"scale": 3}, "classical-x3"),
        ("upscale", {"scale": 8}, "classical-x8"),
        ("upscale", {"scale": 4, "channels": 1}, "real-x4"),
        ("denoise", {"sigma": 25}, "denoise-color-25"),
        ("denoise", {"sigma": 15, "channels": 1}, "denoise-gray-15"),
        ("dejpeg", {"quality": 10}, "dejpeg-color-10"),
        ("dejpeg", {"quality": 40, "channels": 1}, "dejpeg-gray-40"),
    ],
)
def test_choose_model_picks_the_documented_default(task: str, options: dict, expected: str) -> None:
    assert choose_model(task, options.pop(TASKS[task].level_key), **options).name == expected


@pytest.mark.parametrize(
    "task, options, listed",
    [
        ("upscale", {"scale": 5}, "scale values available: 2, 3, 4, 8"),
        ("denoise", {"sigma": 30}, "sigma values available: 15, 25, 50"),
        ("dejpeg", {"quality": 90, "channels": 1}, "quality values available: 10, 20, 30, 40"),
        ("upscale", {}, "needs a scale"),
    ],
)
def test_choose_model_names_what_exists_when_nothing_matches(task: str, options: dict, listed: str) -> None:
    with pytest.raises(UsageError, match=listed):
        choose_model(task, options.pop(TASKS[task].level_key, None), **options)


def test_choose_model_uses_an_added_entry_when_no_preferred_name_exists(tmp_path, monkeypatch) -> None:
    write_override(
        tmp_path,
        monkeypatch,
        '[models.my-x6]\ntask = "upscale"\nscale = 6\nurl = "https://e.org/x6.pth"\ndescription = "x6"\n',
    )
    assert choose_model("upscale", 6).name == "my-x6"


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ModelNotFoundError, match="did you mean real-x4"):
        get_model("real-4x")


def test_override_adds_and_replaces_entries_and_resolves_relative_paths(tmp_path, monkeypatch) -> None:
    write_override(
        tmp_path,
        monkeypatch,
        """
[models.real-x4]
task = "upscale"
scale = 4
url = "weights/custom.pth"
description = "our own x4"

[models.house-denoiser]
task = "denoise"
sigma = 30
channels = 1
url = "file:///srv/models/dn30.pth"
file = "house-dn30.pth"
description = "trained in house"
""",
    )
    registry = load_registry()
    assert len(registry) == 32
    assert registry["real-x4"].url == (tmp_path / "weights" / "custom.pth").resolve().as_uri()
    assert not registry["real-x4"].pinned and not registry["real-x4"].is_remote
    assert registry["house-denoiser"].file == "house-dn30.pth"
    assert choose_model("denoise", 30, channels=1).name == "house-denoiser"


def test_mirror_redirects_every_packaged_entry(tmp_path, monkeypatch) -> None:
    packaged = load_registry()
    write_override(tmp_path, monkeypatch, 'mirror = "https://intranet.example/swinir/"\n')
    mirrored = load_registry()
    assert mirrored.keys() == packaged.keys()
    for name, entry in mirrored.items():
        assert entry.url == f"https://intranet.example/swinir/{entry.file}"
        assert (entry.sha256, entry.size) == (packaged[name].sha256, packaged[name].size)


def test_mirror_may_be_a_local_directory(tmp_path, monkeypatch) -> None:
    write_override(tmp_path, monkeypatch, 'mirror = "weights"\n')
    entry = get_model("real-x4")
    assert entry.url == (tmp_path / "weights").resolve().as_uri() + "/" + entry.file


@pytest.mark.parametrize(
    "table, message",
    [
        ('task = "upscale"\nscale = 4\ndescription = "d"', r"\[models.bad\]: missing required key 'url'"),
        (
            'task = "sharpen"\nurl = "https://e/x.pth"\ndescription = "d"',
            r"\[models.bad\] task: expected one of",
        ),
        ('task = "upscale"\nurl = "https://e/x.pth"\ndescription = "d"', "missing required key 'scale'"),
        (
            'task = "upscale"\nscale = "4"\nurl = "https://e/x.pth"\ndescription = "d"',
            "scale: expected an integer",
        ),
        (
            'task = "denoise"\nsigma = 25\nscale = 2\nurl = "https://e/x.pth"\ndescription = "d"',
            "'scale' does not",
        ),
        (
            'task = "dejpeg"\nquality = 0\nurl = "https://e/x.pth"\ndescription = "d"',
            r"quality: expected 1\.\.100",
        ),
        (
            'task = "upscale"\nscale = 4\nurl = "https://e/x.pth"\ndescription = "d"\nsha256 = "abc"',
            "64 hexadec",
        ),
        (
            'task = "upscale"\nscale = 4\nurl = "ftp://e/x.pth"\ndescription = "d"',
            "unsupported URL scheme 'ftp'",
        ),
        (
            'task = "upscale"\nscale = 4\nurl = "hf://owner/x.pth"\ndescription = "d"',
            "expected hf://owner/repo",
        ),
        ('task = "upscale"\nscale = 4\nurl = "https://e/x.pth"\ndescription = "d"\nchannels = 2', "channels"),
        (
            'task = "upscale"\nscale = 4\nurl = "https://e/x.pth"\ndescription = "d"\nsha = "a"',
            "unknown key 'sha'",
        ),
        (
            'task = "upscale"\nscale = 4\nurl = "https://e/x.pth"\ndescription = "d"\nfile = "../x"',
            "plain file",
        ),
    ],
)
def test_malformed_entries_are_reported_with_file_entry_and_key(
    tmp_path, monkeypatch, table, message
) -> None:
    path = write_override(tmp_path, monkeypatch, f"[models.bad]\n{table}\n")
    with pytest.raises(UsageError, match=message) as caught:
        load_registry()
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_unreadable_or_invalid_override_files_are_usage_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SWINIR_REGISTRY", str(tmp_path / "absent.toml"))
    with pytest.raises(UsageError, match=r"cannot read registry file .*absent\.toml"):
        load_registry()
    write_override(tmp_path, monkeypatch, "[models.x\n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        load_registry()
    write_override(tmp_path, monkeypatch, 'mirrors = "https://typo"\n')
    with pytest.raises(UsageError, match="unknown top-level key 'mirrors'"):
        load_registry()


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "swinir"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "swinir"
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_a_relative_xdg_cache_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The XDG rule: a relative $XDG_CACHE_HOME is invalid and must be ignored."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for relative in ("cache", "~/xdg", "./cache"):
        monkeypatch.setenv("XDG_CACHE_HOME", relative)
        assert cache_dir() == tmp_path / "home" / ".cache" / "swinir"


def test_a_cache_dir_of_an_unknown_user_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SWINIR_CACHE_DIR", "~/mine")
    assert cache_dir() == tmp_path / "home" / "mine"
    monkeypatch.setenv("SWINIR_CACHE_DIR", "~nouser/x")
    with pytest.raises(UsageError) as caught:
        cache_dir()
    assert str(caught.value) == (
        "SWINIR_CACHE_DIR '~nouser/x': there is no user 'nouser' to expand '~nouser' for; "
        "set SWINIR_CACHE_DIR to a full path"
    )


def test_an_unknown_name_with_a_setting_suggests_the_models_of_that_setting() -> None:
    with pytest.raises(ModelNotFoundError, match="did you mean real-x4, real-x4-psnr, real-large-x4\\?"):
        get_model("nope-x4")
    with pytest.raises(ModelNotFoundError, match="did you mean denoise-color-25, denoise-gray-25\\?"):
        get_model("blur-25")


def test_installed_layout_reads_the_registry_shipped_inside_the_package(tmp_path: Path) -> None:
    """As in a wheel: swinir_cli/weights.toml beside the modules, no repository around them."""
    installed = tmp_path / "site-packages" / "swinir_cli"
    shutil.copytree(REPO / "swinir_cli", installed, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "weights.toml", installed / "weights.toml")
    script = "from swinir_cli import registry; print(registry.__file__, len(registry.load_registry()))"
    environment = {**os.environ, "PYTHONPATH": str(installed.parent)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == [str(installed / "registry.py"), "31"]


def test_a_users_entry_needs_only_task_level_and_url(tmp_path, monkeypatch) -> None:
    write_override(
        tmp_path, monkeypatch, '[models.mine-x4]\ntask = "upscale"\nscale = 4\nurl = "https://e.org/m.pth"\n'
    )
    entry = get_model("mine-x4")
    assert (entry.task, entry.level, entry.file, entry.description) == ("upscale", 4, "m.pth", "")


@pytest.mark.parametrize("kind", ["binary", "fifo", "directory"])
def test_a_registry_that_is_not_a_text_file_is_one_line_without_waiting(tmp_path, monkeypatch, kind) -> None:
    path = tmp_path / "extra.toml"
    if kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    elif kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    else:
        path.mkdir()
    monkeypatch.setenv("SWINIR_REGISTRY", str(path))
    script = "from swinir_cli.cli import main; raise SystemExit(main(['models']))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    expected = {"binary": "it is not UTF-8 text", "fifo": "not a regular file", "directory": "a directory"}[
        kind
    ]
    assert f"cannot read registry file {path}: " in result.stderr and expected in result.stderr
