"""`swinir upscale/denoise/dejpeg` run as real subprocesses on real files with the tiny reference models.

Issue 2's acceptance (every golden case through the command line) and the options of issue 5 that act on
single images: --precision, --tta, --outscale/--width/--height, --alpha model, --quiet and plain log lines.
Expected pixels come from the Python API (:class:`swinir_cli.pipeline.Restorer`) run in this process.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import (
    DN_COLOR,
    REFERENCE,
    SR_X2,
    SWINIR,
    TINY,
    api_restore,
    assert_nearly_equal,
    assert_one_clean_error_line,
    one_thread,
    require_shared,
    run_many,
    run_shells,
    run_swinir,
    run_swinir_process,
    save_rgb,
    stderr_lines,
)
from hostile import register
from PIL import Image

from swinir_cli.cli import main
from swinir_cli.imageio import read_image
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings

require_shared()

GOLDEN_CASES = {path.stem: path for path in sorted(TINY.glob("*.pth"))}
GOLDEN_CASES["swinir_s_x4_random"] = REFERENCE / "swinir_s_x4_random.pth"


# --- issue 2: every golden case through the command line ---------------------------------------------


def golden_command(case: str, image: Path, output: Path) -> list[str | Path]:
    """The command for a case: upscale for SR models, dejpeg for window-7 models, else denoise."""
    config_file = TINY / f"{case}.json"
    config = json.loads(config_file.read_text())["config"] if config_file.exists() else {"upscale": 4}
    if config["upscale"] > 1:
        task = ["upscale"]
    elif config["window_size"] == 7:
        task = ["dejpeg", "--quality", "10"]
    else:
        task = ["denoise", "--sigma", "15"]
    return [*task, image, "-o", output, "--weights", GOLDEN_CASES[case], "--tile", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def golden_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    """Each golden case's ``image_u8`` saved as PNG and restored by the command, all cases side by side."""
    folder = tmp_path_factory.mktemp("golden")
    commands = {}
    for case, weights in GOLDEN_CASES.items():
        image = folder / f"{case}.png"
        Image.fromarray(np.load(weights.with_suffix(".npz"))["image_u8"]).save(image)
        commands[case] = golden_command(case, image, folder / f"{case}_out.png")
    results = run_many(list(commands.values()))
    return {
        case: (folder / f"{case}_out.png", result) for case, result in zip(commands, results, strict=True)
    }


def test_all_fourteen_golden_cases_are_present() -> None:
    assert len(GOLDEN_CASES) == 14 and all(path.is_file() for path in GOLDEN_CASES.values())


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_command_reproduces_the_authors_pipeline(case: str, golden_runs) -> None:
    output, result = golden_runs[case]
    assert result.returncode == 0, result.stderr.decode()
    expected = np.load(GOLDEN_CASES[case].with_suffix(".npz"))["pipeline_u8"]
    assert_nearly_equal(np.asarray(Image.open(output)), expected)


def test_help_of_the_program_and_of_each_command(capsys: pytest.CaptureFixture[str]) -> None:
    program = run_swinir_process("--help")  # the installed console script, as a user runs it
    assert program.returncode == 0 and program.stderr == b""
    assert all(name in program.stdout.decode() for name in ("upscale", "denoise", "dejpeg"))
    for command in ("upscale", "denoise", "dejpeg"):  # in this process: the same app, without torch's import
        assert main([command, "--help"]) == 0
        shown = capsys.readouterr().out
        assert f"Usage: swinir {command}" in shown
        for option in ("--output", "--tile", "--precision", "--tta", "--alpha", "--outscale", "--json"):
            assert option in shown, (command, option)


def test_bad_option_missing_file_and_bad_values_exit_non_zero_on_one_line(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "a.png")
    bad_option, missing, fp16_on_cpu = run_many(
        [
            ["upscale", image, "--no-such-option"],
            ["denoise", tmp_path / "missing.png", "--weights", DN_COLOR, "--device", "cpu"],
            ["upscale", image, "--weights", SR_X2, "--device", "cpu", "--precision", "fp16"],
        ]
    )
    assert bad_option.returncode == 2
    assert_one_clean_error_line(bad_option, "--no-such-option")
    assert missing.returncode == 1
    assert_one_clean_error_line(missing, "missing.png", "no such file")
    assert fp16_on_cpu.returncode == 2
    assert_one_clean_error_line(fp16_on_cpu, "fp16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_a_scale_the_model_cannot_make_is_refused_naming_its_scale(tmp_path: Path) -> None:
    result = run_swinir("upscale", save_rgb(tmp_path / "a.png"), "--scale", "4", "--weights", SR_X2)
    assert result.returncode == 2
    assert_one_clean_error_line(result, "x2", "x4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# --- issue 5: options on single images ---------------------------------------------------------------


def test_tta_matches_the_api(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "a.png")
    result = run_swinir(
        "upscale",
        image,
        "-o",
        tmp_path / "tta.png",
        "--tta",
        "--weights",
        SR_X2,
        "--device",
        "cpu",
        "--tile",
        "0",
    )
    assert result.returncode == 0, result.stderr.decode()
    plain = api_restore(SR_X2, image).pixels
    with_tta = api_restore(SR_X2, image, tta=True).pixels
    assert_nearly_equal(read_image(tmp_path / "tta.png").pixels, with_tta)
    assert np.abs(with_tta.astype(int) - plain).max() > 1


def test_outscale_width_and_height_resize_after_the_model(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "a.png", height=20, width=24)
    common = ["--weights", SR_X2, "--device", "cpu", "--tile", "0", "--scale", "2"]
    shrink, enlarge = run_many(
        [
            ["upscale", image, "--outscale", "1.5", *common],
            ["upscale", image, "-o", tmp_path / "wide.png", "--width", "60", *common],
        ]
    )
    assert shrink.returncode == 0 and enlarge.returncode == 0, (shrink.stderr, enlarge.stderr)
    model_output = api_restore(SR_X2, image).pixels  # 40 x 48
    shrunk = cv2.resize(model_output, (36, 30), interpolation=cv2.INTER_AREA)
    assert_nearly_equal(read_image(tmp_path / "a_x1.5.png").pixels, shrunk)  # named after --outscale
    enlarged = cv2.resize(model_output, (60, 50), interpolation=cv2.INTER_LANCZOS4)
    assert_nearly_equal(read_image(tmp_path / "wide.png").pixels, enlarged)  # aspect ratio kept


def test_outscale_with_width_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = save_rgb(tmp_path / "a.png")
    assert main(["upscale", str(image), "--outscale", "3", "--width", "10", "--weights", str(SR_X2)]) == 2
    assert capsys.readouterr().err == "error: --outscale cannot be combined with --width/--height\n"


def test_a_suffix_with_a_path_separator_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--suffix a/b`` wrote into a new sub-folder, ``/../../x`` outside ``-o`` (issue 18, item 4)."""
    image = save_rgb(tmp_path / "a.png")
    for suffix in ("a/b", "/../../x"):
        assert (
            main(
                ["upscale", str(image), "--suffix", suffix, "--weights", str(SR_X2), "-o", f"{tmp_path}/out/"]
            )
            == 2
        )
        assert capsys.readouterr().err == (
            f"error: --suffix {suffix!r} holds the path separator '/'; a suffix is part of a file name\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_alpha_through_the_model(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "a.png", mode="RGBA")
    result = run_swinir(
        "upscale", image, "-o", tmp_path / "model.png", "--alpha", "model",
        "--weights", SR_X2, "--device", "cpu", "--tile", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    restorer = Restorer.from_weights(SR_X2, RestoreSettings(device="cpu", tile=0))
    through_model = Restorer(restorer.model, RestoreSettings(device="cpu", tile=0, alpha="model"))
    loaded = read_image(image)
    with one_thread():
        expected = restorer.restore_image(loaded)
        expected_alpha = through_model.restore_image(loaded).alpha
    produced = read_image(tmp_path / "model.png")
    assert_nearly_equal(produced.alpha, expected_alpha)
    assert np.abs(expected_alpha.astype(int) - expected.alpha).max() > 1  # not the bicubic default
    assert_nearly_equal(produced.pixels, expected.pixels)  # the colour channels are not affected


def test_quiet_prints_nothing_and_plain_lines_name_each_image(tmp_path: Path) -> None:
    first, second = save_rgb(tmp_path / "first.png"), save_rgb(tmp_path / "second.png", seed=1)
    third = save_rgb(tmp_path / "third.png", seed=2)
    common = ["--weights", SR_X2, "--device", "cpu", "--tile", "0", "--scale", "2"]
    quiet, plain = run_many(
        [
            ["upscale", first, "-o", f"{tmp_path}/quiet/", "--quiet", *common],
            ["upscale", first, second, third, "-o", tmp_path / "plain", *common],
        ]
    )
    assert quiet.returncode == 0 and quiet.stderr == b"" and quiet.stdout == b""
    assert (tmp_path / "quiet" / "first_x2.png").is_file()
    assert plain.returncode == 0 and plain.stdout == b""
    text = plain.stderr.decode()
    assert "\x1b" not in text and "\r" not in text  # no terminal control codes when stderr is a pipe
    lines = text.splitlines()
    # each image is named as its result is written, with its seconds and the time the batch has left
    out = tmp_path / "plain"
    for line, (n, image) in zip(lines, enumerate((first, second, third), start=1), strict=False):
        named = re.escape(f"[{n}/3] {image} -> {out / image.stem}_x2.png (")
        left = r", \d+:\d\d left" if n < 3 else ""  # on the last image nothing is left
        assert re.fullmatch(named + r"\d+\.\d s" + left + r"\)", line), line
    assert lines[3].startswith("3 done, 0 skipped, 0 failed in ") and lines[3].endswith(" s")
    assert len(lines) == 4


def test_decoder_warnings_are_shown_once_per_file(tmp_path: Path) -> None:
    image = Image.fromarray(np.full((16, 16, 3), 128, np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 9  # not an orientation: read_image warns and ignores it
    image.save(tmp_path / "odd.jpg", exif=exif)
    result = run_swinir(
        "denoise",
        tmp_path / "odd.jpg",
        "--sigma",
        "15",
        "--weights",
        DN_COLOR,
        "--device",
        "cpu",
        "--tile",
        "0",
    )
    assert result.returncode == 0, result.stderr.decode()
    warnings = [line for line in stderr_lines(result) if line.startswith("warning:")]
    assert len(warnings) == 1 and "odd.jpg" in warnings[0] and "orientation" in warnings[0]


def test_a_terminal_gets_live_progress_and_names_each_written_image(tmp_path: Path) -> None:
    first, second = save_rgb(tmp_path / "first.png"), save_rgb(tmp_path / "second.png", seed=1)
    controller, terminal = pty.openpty()
    command = [SWINIR, "upscale", first, second, "--weights", SR_X2, "--device", "cpu", "--tile", "16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120", "TERM": "xterm"}
    with subprocess.Popen(command, stderr=terminal, stdout=subprocess.PIPE, env=env) as process:
        os.close(terminal)
        shown = bytearray()
        while chunk := _read_terminal(controller):
            shown += chunk
        stdout = process.stdout.read()
    os.close(controller)
    text = shown.decode(errors="replace")
    assert process.returncode == 0 and stdout == b"", text
    assert "images" in text and "\x1b[" in text  # rich's live display (too quick here to show tiles)
    assert f"{first} -> {tmp_path / 'first_x2.png'}" in text  # named by the checkpoint's factor
    assert "2 done, 0 skipped, 0 failed in " in text


def _read_terminal(controller: int) -> bytes:
    try:
        return os.read(controller, 65536)
    except OSError:  # EIO: the command closed the terminal
        return b""


def test_a_named_model_names_its_outputs_by_its_factor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--model NAME` without --scale: the registry says the factor, so the default name still carries it."""
    register(tmp_path, monkeypatch, str(SR_X2), sha256=None)  # entry tiny-x2, a local file
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(tmp_path / "cache"))
    Image.fromarray(np.full((12, 10, 3), 90, np.uint8)).save(tmp_path / "a.png")
    result = run_swinir("upscale", "a.png", "--model", "tiny-x2", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "a_x2.png").size == (20, 24)
    typo = run_swinir("upscale", "a.png", "--model", "tiny-x3", cwd=tmp_path)
    assert typo.returncode == 2  # a usage error, before any work
    assert_one_clean_error_line(typo, "tiny-x3", "did you mean tiny-x2")


# --- issue 11: refusals before any work, true names, no silent loss -----------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["upscale", "a.png", "-m", "nosuch"], ["no model named 'nosuch'"]),
        (["upscale", "a.png", "-m", "real-x4", "-w", SR_X2], ["--model and --weights"]),
        (["denoise", "a.png", "-w", SR_X2], ["x2 upscaling model", "swinir upscale"]),
        (["upscale", "a.png", "-w", DN_COLOR], ["does not upscale (x1)"]),
        (["upscale", "a.png", "-w", SR_X2, "-s", "4"], ["upscales x2, not x4"]),
        (["upscale", "a.png", "-w", SR_X2, "-o", "x.png", "-f", "jpg"], ["PNG file but --format is jpg"]),
        (["upscale", "a.png", "-w", SR_X2, "--width", "100000"], ["100000", "65535"]),
        (["upscale", "a.png", "-w", SR_X2, "-t", "4"], ["--tile 4", "window of 8"]),
        (["upscale", "a.png", "-w", SR_X2, "-t", "32", "--tile-overlap", "24"], ["more than half"]),
        (["download", "nosuch"], ["no model named 'nosuch'"]),
        (["denoise", "a.png", "-w", DN_COLOR, "-o", "a.png"], ["would replace the input"]),
    ],
)
def test_usage_errors_are_one_line_exit_2_before_any_work(tmp_path: Path, args: list, words: list) -> None:
    save_rgb(tmp_path / "a.png")
    result = run_swinir(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert_one_clean_error_line(result, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # nothing written


def test_bare_swinir_prints_help_and_h_and_v_work_everywhere() -> None:
    bare = run_swinir()
    assert bare.returncode == 0 and b"Usage: swinir" in bare.stdout and bare.stderr == b""
    for command in ("upscale", "denoise", "dejpeg", "eval", "models", "download"):
        helped = run_swinir(command, "-h")
        assert helped.returncode == 0 and b"Examples" in helped.stdout, command
        assert b"<bool>" not in helped.stdout and b"<list[str]>" not in helped.stdout.split(b"Options")[-1]
        assert run_swinir(command, "-V").stdout.startswith(b"swinir-cli ")
    assert b"2|3|4|8" in run_swinir("upscale", "-h").stdout


def test_weights_name_outputs_by_the_checkpoint_factor_and_outscale_by_its_own(tmp_path: Path) -> None:
    save_rgb(tmp_path / "a.png")
    assert run_swinir("upscale", "a.png", "-w", SR_X2, "--device", "cpu", cwd=tmp_path).returncode == 0
    assert Image.open(tmp_path / "a_x2.png").size == (48, 40)
    resized = run_swinir("upscale", "a.png", "-w", SR_X2, "--outscale", "1.5", cwd=tmp_path)
    assert resized.returncode == 0 and Image.open(tmp_path / "a_x1.5.png").size == (36, 30)


def test_an_output_made_from_another_input_is_never_skipped_silently(tmp_path: Path) -> None:
    """cam1/IMG_1.png and cam2/IMG_1.png run one at a time into out/ (as xargs -n1 does)."""
    for camera, seed in (("cam1", 1), ("cam2", 2)):
        (tmp_path / camera).mkdir()
        save_rgb(tmp_path / camera / "IMG_1.png", seed=seed)
    first = run_swinir("upscale", "cam1/IMG_1.png", "-w", SR_X2, "-o", "out/", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    made = (tmp_path / "out" / "IMG_1_x2.png").read_bytes()
    again = run_swinir("upscale", "cam1/IMG_1.png", "-w", SR_X2, "-o", "out/", cwd=tmp_path)
    assert again.returncode == 0 and b"skipped" in again.stderr  # same input: resumed, not redone
    other = run_swinir("upscale", "cam2/IMG_1.png", "-w", SR_X2, "-o", "out/", cwd=tmp_path)
    assert other.returncode == 1
    assert_one_clean_error_line(other, "cam2/IMG_1.png", "made from another IMG_1.png", "--overwrite")
    assert (tmp_path / "out" / "IMG_1_x2.png").read_bytes() == made


def test_a_resized_result_is_redone_by_a_plain_run_and_said(tmp_path: Path) -> None:
    """Issue 18.2: the settings that change pixels are part of what an existing output is judged by."""
    save_rgb(tmp_path / "a.png")
    command = ("upscale", "a.png", "-w", SR_X2, "--device", "cpu")
    assert run_swinir(*command, "--width", "30", cwd=tmp_path).returncode == 0
    assert Image.open(tmp_path / "a_x2.png").size == (30, 25)
    plain = run_swinir(*command, cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "warning: a.png: a_x2.png was made from this input with other settings; redone" in stderr_lines(
        plain
    )
    assert Image.open(tmp_path / "a_x2.png").size == (48, 40)
    again = run_swinir(*command, cwd=tmp_path)
    assert again.returncode == 0 and b"skipped" in again.stderr and b"redone" not in again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x2.png"]  # nothing hidden beside


def test_lossy_outputs_are_warned_once(tmp_path: Path) -> None:
    save_rgb(tmp_path / "t1.png", mode="RGBA")
    save_rgb(tmp_path / "t2.png", mode="RGBA", seed=3)
    frames = [Image.fromarray(np.full((16, 16, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    result = run_swinir(
        "upscale", "t1.png", "t2.png", "anim.gif", "-w", SR_X2, "-f", "jpg", "-o", "o/", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in stderr_lines(result) if line.startswith("warning:")]
    assert len([w for w in warnings if "transparency is dropped" in w]) == 1
    assert len([w for w in warnings if "2 frames" in w and "only the first" in w]) == 1
    piped = run_swinir("upscale", "-", "-w", SR_X2, stdin=(tmp_path / "anim.gif").read_bytes())
    assert piped.returncode == 0 and b"<stdin>: has 2 frames or pages; only the first" in piped.stderr
    Image.fromarray(np.full((12, 14), 40000, np.uint16)).save(tmp_path / "deep.png")
    deep = run_swinir("upscale", "deep.png", "-w", SR_X2, "-f", "jpg", "-o", "d/", cwd=tmp_path)
    assert deep.returncode == 0 and b"16-bit depth is reduced" in deep.stderr
    gray = run_swinir("denoise", "t1.png", "-w", TINY / "dn_gray.pth", "-o", "g/", cwd=tmp_path)
    assert gray.returncode == 0 and b"is a gray model, so the result is gray" in gray.stderr


def test_binary_output_to_a_terminal_is_refused(tmp_path: Path) -> None:
    save_rgb(tmp_path / "a.png")
    controller, terminal = pty.openpty()
    command = [SWINIR, "upscale", "a.png", "-w", SR_X2, "-o", "-"]
    with subprocess.Popen(command, stdout=terminal, stderr=subprocess.PIPE, cwd=tmp_path) as process:
        os.close(terminal)
        _, err = process.communicate(timeout=120)
    os.close(controller)
    assert process.returncode == 2 and b"not for a terminal" in err


def test_standard_output_that_fails_or_is_closed_is_one_line_and_exit_1(tmp_path: Path) -> None:
    save_rgb(tmp_path / "big.png")
    # The reader is gone before the image is written (`| head -c 10` on a large output does the same; a
    # small image fits in the pipe's buffer, so `true` makes the broken pipe certain).
    upscale = f"{SWINIR} upscale big.png -w {SR_X2}"
    piped, full, closed_out, closed_in = run_shells(
        [
            f"{upscale} -t 0 -o - | true; exit ${{PIPESTATUS[0]}}",
            f"{upscale} -t 0 -o - > /dev/full",
            f"{upscale} -o - >&-",
            f"{SWINIR} upscale - -w {SR_X2} -o x.png <&-",
        ],
        cwd=tmp_path,
        timeout=300,
    )
    assert piped.returncode == 1, piped.stderr
    assert_one_clean_error_line(piped, "<stdout>")
    assert b"Exception ignored" not in piped.stderr
    assert full.returncode == 1 and b"No space left" in full.stderr and b"Traceback" not in full.stderr
    assert closed_out.returncode == 1 and b"<stdout>: standard output is closed" in closed_out.stderr
    assert closed_in.returncode == 1 and b"<stdin>: standard input is closed" in closed_in.stderr


# --- issue 21: refused before any work, a way forward in every error ---------------------------------


def _one_error(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert all(word in lines[0] for word in words), lines[0]


def test_several_inputs_into_one_image_file_or_an_existing_file_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = save_rgb(tmp_path / "a.png"), save_rgb(tmp_path / "b.png", seed=1)
    (tmp_path / "notes.txt").write_text("not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    common = ["-w", str(SR_X2), "--device", "cpu"]
    assert main(["upscale", str(first), str(second), "-o", str(tmp_path / "one.png"), *common]) == 2
    _one_error(capsys, "one.png", "names an image file", "folder")
    assert main(["upscale", str(tmp_path), "-o", str(tmp_path / "notes.txt"), *common]) == 2
    _one_error(capsys, "notes.txt", "is a file", "folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no folder one.png/, no image restored


@pytest.fixture
def tiny_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SWINIR_REGISTRY with `tiny-x2` (the tiny x2 model, fetched by a copy) and `tiny-dn-15` (a colour
    denoiser for sigma 15, the only one: --sigma auto picks it); returns the (empty) cache folder."""
    registry = tmp_path / "registry.toml"
    registry.write_text(
        f'[models.tiny-x2]\ntask = "upscale"\nscale = 2\nurl = "{SR_X2}"\ndescription = "tiny"\n'
        f'[models.tiny-dn-15]\ntask = "denoise"\nsigma = 15\nchannels = 3\nurl = "{DN_COLOR}"\n'
        'description = "tiny"\n'
    )
    monkeypatch.setenv("SWINIR_REGISTRY", str(registry))
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_missing_inputs_are_named_and_no_model_is_fetched(
    tmp_path: Path, tiny_registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.png")
    assert main(["upscale", missing, "-m", "tiny-x2", "--device", "cpu"]) == 1
    assert capsys.readouterr().err == f"error: {missing}: no such file or folder\n"
    other = str(tmp_path / "other.png")
    assert main(["upscale", missing, other, "-m", "tiny-x2", "-o", str(tmp_path / "out"), "--json"]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {missing}: no such file or folder", f"error: {other}: no such file or folder"]
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["input"], r["status"], r["output"]) for r in records] == [(missing, "failed", None),
                                                                       (other, "failed", None)]  # fmt: skip
    assert not tiny_registry.exists() or not any(tiny_registry.rglob("*.*"))  # nothing downloaded


def test_json_has_a_failed_record_per_input_when_the_model_cannot_be_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry.toml"
    registry.write_text(
        f'[models.gone-x2]\ntask = "upscale"\nscale = 2\nurl = "{tmp_path / "gone.pth"}"\ndescription = "x"\n'
    )
    monkeypatch.setenv("SWINIR_REGISTRY", str(registry))
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(tmp_path / "cache"))
    first, second = save_rgb(tmp_path / "a.png"), save_rgb(tmp_path / "b.png", seed=1)
    out, missing = tmp_path / "out", str(tmp_path / "missing.png")
    command = ["upscale", str(first), missing, str(second), "-m", "gone-x2", "-o", str(out), "--json"]
    assert main(command) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["input"], r["output"], r["status"]) for r in records] == [
        (missing, None, "failed"),  # its own reason, and no output: planning found none
        (str(first), str(out / "a_x2.png"), "failed"),
        (str(second), str(out / "b_x2.png"), "failed"),
    ]
    assert records[0]["error"] == f"{missing}: no such file or folder"
    assert all("gone.pth" in r["error"] for r in records[1:])
    assert len(captured.err.splitlines()) == 1 and "gone.pth" in captured.err  # the one line of the stop


def test_formats_that_cannot_hold_the_result_are_refused_and_gif_is_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = save_rgb(tmp_path / "a.png")
    common = [str(image), "-w", str(SR_X2), "--device", "cpu", "--tile", "0"]
    for icon in ("x.ico", "x.icns"):
        assert main(["upscale", *common, "-o", str(tmp_path / icon)]) == 2
        _one_error(capsys, icon, "does not write", "png")
    for fmt in ("msp", "palm", "xbm", "blp", "nosuch"):
        assert main(["upscale", *common, "-f", fmt]) == 2
        _one_error(capsys, f"--format {fmt}", "not a format swinir writes", "png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert main(["upscale", *common, "-f", "gif"]) == 0
    assert "gif holds 256 colours" in capsys.readouterr().err.lower()
    assert Image.open(tmp_path / "a_x2.gif").size == (48, 40)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "1e999", "abc", "0"])
def test_outscale_must_be_a_finite_positive_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    image = save_rgb(tmp_path / "a.png")
    assert main(["upscale", str(image), "--outscale", value, "-w", str(SR_X2), "--device", "cpu"]) == 2
    _one_error(capsys, "--outscale")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_image_data_for_a_terminal_and_standard_input_from_a_terminal_are_refused(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "a.png").read_bytes()
    controller, terminal = pty.openpty()
    try:
        command = [SWINIR, "denoise", "-", "--sigma", "15", "-w", DN_COLOR, "--device", "cpu"]
        with subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=terminal, stderr=subprocess.PIPE, cwd=tmp_path
        ) as to_terminal:
            _, err = to_terminal.communicate(image, timeout=120)
        assert to_terminal.returncode == 2, err
        assert_one_clean_error_line(subprocess.CompletedProcess([], 2, b"", err), "not for a terminal")
        command = [SWINIR, "upscale", "-", "-w", SR_X2, "-o", "out.png"]
        with subprocess.Popen(
            command, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
        ) as from_terminal:
            _, err = from_terminal.communicate(timeout=120)
        assert from_terminal.returncode == 2, err
        assert_one_clean_error_line(subprocess.CompletedProcess([], 2, b"", err), "standard input", "pipe")
    finally:
        os.close(terminal)
        os.close(controller)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_noise_estimation_on_a_tiny_image_names_the_file(
    tmp_path: Path, tiny_registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = save_rgb(tmp_path / "tiny.png", height=3, width=3)
    assert main(["denoise", str(tiny), "--device", "cpu"]) == 1
    _one_error(capsys, str(tiny), "cannot estimate the noise level", "--sigma 15|25|50")


def test_a_folder_without_r_says_its_sub_folders_were_not_entered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "shots"
    (folder / "day1").mkdir(parents=True)
    (folder / "day2").mkdir()
    save_rgb(folder / "top.png")
    save_rgb(folder / "day1" / "inner.png")
    assert main(["upscale", str(folder), "-w", str(SR_X2), "--device", "cpu", "--tile", "0"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {folder}: 2 sub-folder(s) not entered; -r (--recursive) restores their images"
    ]


def test_help_lists_choices_and_says_what_tile_auto_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one line per option
    assert main(["upscale", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "auto|fp32|fp16|bf16" in shown and "eval" not in shown
    assert (
        "'auto': the whole image when its estimated memory fits the device's budget, else the tile plan"
        in shown
    )
    assert "png, jpg, webp" in shown and "ico" not in shown
    assert main(["eval", "--help"]) == 0
    assert "With --restored: the factor of the results" in capsys.readouterr().out
    assert main(["dejpeg", "x.png", "--quality", "35"]) == 2
    _one_error(capsys, "quality values available: 10, 20, 30, 40")
