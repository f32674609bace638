"""`swinir eval` through the real command: what it refuses, and what it says it measured."""

from __future__ import annotations

from pathlib import Path

from conftest import assert_one_clean_error_line, run_swinir, save_rgb


def test_restored_mode_says_its_crop_border_and_sr_needs_a_scale(tmp_path: Path) -> None:
    for folder in ("gt", "restored"):
        (tmp_path / folder).mkdir()
        save_rgb(tmp_path / folder / "baby.png")
    plain = run_swinir("eval", "--restored", "restored", "--gt", "gt", "--json", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert b"crop border 0" in plain.stderr and b"--scale" in plain.stderr
    needs_scale = run_swinir(
        "eval", "--restored", "restored", "--gt", "gt", "--task", "upscale", cwd=tmp_path
    )
    assert needs_scale.returncode == 2
    assert_one_clean_error_line(needs_scale, "--scale")
    scaled = run_swinir("eval", "--restored", "restored", "--gt", "gt", "-s", "2", "--json", cwd=tmp_path)
    assert scaled.returncode == 0 and b"crop border" not in scaled.stderr


def test_an_unknown_model_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "gt").mkdir()
    result = run_swinir("eval", "nosuch", "--gt", "gt", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_clean_error_line(result, "no model named 'nosuch'")
