"""`swinir eval` through the real command: what it refuses, what it says it measured, what it prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import SR_X2, TINY, assert_one_clean_error_line, require_shared, run_swinir, save_rgb

from swinir_cli.cli import main

require_shared()


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


def run_eval(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, list[str]]:
    """``swinir eval ARGS`` in this process: (exit code, stdout, stderr lines)."""
    code = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def assert_one_error_line(lines: list[str], *words: str) -> None:
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(word in lines[0] for word in words), lines[0]


def test_help_lists_only_the_devices_eval_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    code, shown, _ = run_eval(capsys, "--help")
    assert code == 0
    assert "auto|cpu|cuda|cuda:N|mps" in shown and "one device" in shown
    assert "LIST" not in shown and "cpu,cpu" not in shown
    (tmp_path / "gt").mkdir()
    save_rgb(tmp_path / "gt" / "a.png")
    code, _, errors = run_eval(capsys, "--weights", SR_X2, "--gt", tmp_path / "gt", "--device", "cpu,cpu")
    assert code == 2
    assert_one_error_line(errors, "unknown device 'cpu,cpu'")


def test_json_of_identical_images_is_strict_json_with_the_infinite_figures_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in ("gt", "restored"):
        (tmp_path / folder).mkdir()
        save_rgb(tmp_path / folder / "baby.png", height=32, width=32)
    code, out, _ = run_eval(
        capsys, "--restored", tmp_path / "restored", "--gt", tmp_path / "gt", "-s", "2", "--json"
    )
    assert code == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    report = json.loads(out, parse_constant=refuse)
    for record in (report["images"][0], report["average"]):
        assert record["psnr"] is None and record["psnr_y"] is None and record["ssim"] == 1.0
        assert record["infinite"] == ["psnr", "psnr_y"]


def test_what_eval_would_save_badly_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gt").mkdir()
    save_rgb(tmp_path / "gt" / "baby.png")
    (tmp_path / "taken").write_bytes(b"not a folder")
    model = ["--weights", str(SR_X2), "--gt", "gt", "--device", "cpu"]
    cases = {
        "--save taken exists and is not a folder": [*model, "--save", "taken"],
        "--save gt is the --gt folder": [*model, "--save", "gt/"],
        "--save-lq gt is the --gt folder": [*model, "--save-lq", "./gt"],
        "--save-lq keeps inputs synthesised from --gt": [*model, "--lq", "gt", "--save-lq", "lq"],
        "--restored measures existing images; drop --save": ["--restored", "gt", "--gt", "gt", "--save", "x"],
        "--suffix names the images of --restored": [*model, "--suffix", "_x2"],
        "--lq-resize must be one of integer, float, not 'double'": [*model, "--lq-resize", "double"],
    }
    for words, args in cases.items():
        code, _, errors = run_eval(capsys, *args)
        assert code == 2, words
        assert_one_error_line(errors, words)
    assert sorted(p.name for p in (tmp_path / "gt").iterdir()) == ["baby.png"]
    assert (tmp_path / "taken").read_bytes() == b"not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt", "taken"]


def test_eval_from_hr_then_upscale_then_eval_of_the_outputs_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's workflow: inputs made from HR alone, restored by the `swinir upscale` command (which
    names them babyx4_x4.png), then measured with --restored: the same figures as eval's own run."""
    gt, lq, out = tmp_path / "gt", tmp_path / "lq", tmp_path / "out"
    gt.mkdir()
    for seed, name in enumerate(("baby.png", "bird.png")):
        save_rgb(gt / name, height=42, width=37, seed=seed)
    weights = TINY / "sr_pixelshuffle_x4.pth"
    code, own, _ = run_eval(
        capsys, "--weights", weights, "--gt", gt, "--save-lq", lq, "--device", "cpu", "--json"
    )
    assert code == 0
    assert sorted(p.name for p in lq.iterdir()) == ["babyx4.png", "birdx4.png"]
    upscaled = run_swinir(
        "upscale", lq, "-o", f"{out}/", "--weights", weights, "--tile", "0", "--device", "cpu"
    )
    assert upscaled.returncode == 0, upscaled.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["babyx4_x4.png", "birdx4_x4.png"]

    code, alone, _ = run_eval(capsys, "--restored", out, "--gt", gt, "--scale", "4", "--json")
    assert code == 0
    for key in ("psnr", "ssim", "psnr_y", "ssim_y"):
        expected = json.loads(own)["average"][key]
        assert json.loads(alone)["average"][key] == pytest.approx(
            expected, abs=0.01 if "psnr" in key else 1e-4
        )
    save_rgb(gt / "head.png", seed=7)
    code, _, errors = run_eval(capsys, "--restored", out, "--gt", gt, "--scale", "4")
    assert code == 2
    assert_one_error_line(errors, "no restored image for head.png", "looked for head_x4.*, headx4_x4.*")
