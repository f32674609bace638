"""Batches: planning (names, folders, clashes), running (skip, overwrite, failures), resizing, and the
issue 5 acceptance run through the real `swinir` command: a folder of good and bad files, stdin to
stdout, resuming, --json, --recursive with non-ASCII names, and Ctrl-C.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import signal
import struct
import subprocess
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import (
    DN_COLOR,
    SR_X2,
    SWINIR,
    TINY,
    api_restore,
    assert_nearly_equal,
    require_shared,
    run_swinir,
    save_rgb,
)
from hostile import with_sparse_tail
from PIL import Image

from swinir_cli.batch import (
    OutputOptions,
    output_pixel_limit,
    output_size,
    plan_jobs,
    resize_image,
)
from swinir_cli.cli import main
from swinir_cli.errors import UsageError
from swinir_cli.imageio import (
    ENCODED_BYTES_PER_PIXEL,
    ENCODED_EXTRA_BYTES,
    ImageMetadata,
    LoadedImage,
    read_image,
    read_provenance,
    write_image,
)
from swinir_cli.jobs import Job
from swinir_cli.pipeline import Restorer
from swinir_cli.provenance import ContentId, Provenance, place_of
from swinir_cli.runners import run_jobs
from swinir_cli.settings import RestoreSettings

require_shared()

X2 = OutputOptions(suffix="_x2")


def visible(folder: Path) -> list[str]:
    """The names in ``folder`` but hidden ones."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def touch_images(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        save_rgb(folder / name, height=8, width=8)


# --- planning -------------------------------------------------------------------------------------------


def test_files_get_outputs_beside_them_and_folders_a_folder_beside_them(tmp_path: Path) -> None:
    touch_images(tmp_path, "a.png", "photos/b.jpg", "photos/sub/c.png")
    (tmp_path / "photos" / "notes.txt").write_text("hello")
    (tmp_path / "photos" / ".hidden.png").write_bytes(b"")
    plan = plan_jobs([str(tmp_path / "a.png"), str(tmp_path / "photos")], None, X2)
    assert [(job.source, job.target) for job in plan.jobs] == [
        (tmp_path / "a.png", tmp_path / "a_x2.png"),
        (tmp_path / "photos" / "b.jpg", tmp_path / "photos_x2" / "b_x2.png"),
    ]
    assert plan.not_images == [tmp_path / "photos" / "notes.txt"]
    recursive = plan_jobs(
        [str(tmp_path / "photos")], None, OutputOptions("_x2", format="jpg"), recursive=True
    )
    assert [job.target for job in recursive.jobs] == [
        tmp_path / "photos_x2" / "b_x2.jpg",
        tmp_path / "photos_x2" / "sub" / "c_x2.jpg",
    ]


def test_output_file_folder_and_trailing_slash(tmp_path: Path) -> None:
    touch_images(tmp_path, "a.png", "b.png")
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    assert plan_jobs([a], str(tmp_path / "out.webp"), X2).jobs[0].target == tmp_path / "out.webp"
    assert plan_jobs([a], f"{tmp_path}/new/", X2).jobs[0].target == tmp_path / "new" / "a_x2.png"
    several = plan_jobs([a, b], str(tmp_path / "out"), X2)
    assert [job.target for job in several.jobs] == [
        tmp_path / "out" / "a_x2.png",
        tmp_path / "out" / "b_x2.png",
    ]
    pattern = plan_jobs([str(tmp_path / "*.png")], str(tmp_path / "out"), X2)
    assert [job.source for job in pattern.jobs] == [tmp_path / "a.png", tmp_path / "b.png"]


def test_recursive_output_folder_mirrors_the_tree_and_is_not_read_back(tmp_path: Path) -> None:
    touch_images(tmp_path, "in/a.png", "in/x/y/b.png", "in/out/old_x2.png")
    plan = plan_jobs([str(tmp_path / "in")], str(tmp_path / "in" / "out"), X2, recursive=True)
    assert [job.target for job in plan.jobs] == [
        tmp_path / "in" / "out" / "a_x2.png",
        tmp_path / "in" / "out" / "x" / "y" / "b_x2.png",
    ]


def test_missing_inputs_and_unmatched_patterns_fail_alone(tmp_path: Path) -> None:
    touch_images(tmp_path, "a.png")
    plan = plan_jobs([str(tmp_path / "gone.png"), str(tmp_path / "*.tif"), str(tmp_path / "a.png")], None, X2)
    problems = [job.problem for job in plan.jobs]
    assert problems[0] == f"{tmp_path / 'gone.png'}: no such file or folder"
    assert problems[1] == f"{tmp_path / '*.tif'}: no file matches this pattern"
    assert problems[2] is None and plan.jobs[2].target == tmp_path / "a_x2.png"


def mark_as_made_by_swinir(path: Path) -> None:
    """Rewrite the image at ``path`` as swinir writes its outputs: with a provenance record inside."""
    record = Provenance("other.png", ContentId.of(b"other"), "", "").to_text()
    image = read_image(path)
    write_image(path, dataclasses.replace(image, metadata=ImageMetadata(provenance=record)))


def test_an_output_never_replaces_an_input_or_another_output(tmp_path: Path) -> None:
    touch_images(tmp_path, "a.png", "a_x2.png", "b.png", "b.jpg")
    names = [str(tmp_path / name) for name in ("a.png", "a_x2.png", "b.png", "b.jpg")]
    same_name = plan_jobs([names[0]], None, OutputOptions(suffix=""))
    assert "would replace the input" in same_name.jobs[0].problem
    mark_as_made_by_swinir(tmp_path / "a_x2.png")
    plain = plan_jobs(names, None, X2)  # a_x2.png is swinir's output of a.png: never an input of this run
    assert [job.source.name for job in plain.jobs] == ["a.png", "b.png", "b.jpg"]
    assert plain.ignored == [(tmp_path / "a_x2.png", "an output of this run, not an input")]
    assert [job.problem is None for job in plain.jobs] == [True, True, False]
    assert "also the output of" in plain.jobs[2].problem and "b.png" in plain.jobs[2].problem
    overwriting = plan_jobs(names, None, OutputOptions(suffix="_x2", overwrite=True))
    assert overwriting.jobs[0].problem is None and len(overwriting.ignored) == 1  # a_x2.png: not an input
    assert plan_jobs([names[0], names[0], str(tmp_path)], str(tmp_path / "o"), X2).jobs[0].problem is None
    assert len(plan_jobs([names[0], names[0]], str(tmp_path / "o"), X2).jobs) == 1


def test_a_users_file_named_like_an_output_stays_an_input_and_is_never_replaced(tmp_path: Path) -> None:
    """Issue 18.1: the user's own photo_x2.png, matched by the same glob as photo.png."""
    touch_images(tmp_path, "photo.png", "photo_x2.png")
    for overwrite in (False, True):
        plan = plan_jobs([str(tmp_path / "*.png")], None, OutputOptions("_x2", overwrite=overwrite))
        assert [job.source.name for job in plan.jobs] == ["photo.png", "photo_x2.png"] and not plan.ignored
        assert plan.jobs[0].problem == (
            f"{tmp_path / 'photo.png'}: the output {tmp_path / 'photo_x2.png'} would replace the input "
            f"{tmp_path / 'photo_x2.png'}, which swinir did not make; choose another --output or --suffix"
        )
        assert plan.jobs[1].problem is None and plan.jobs[1].target == tmp_path / "photo_x2_x2.png"


def test_standard_input_and_output(tmp_path: Path) -> None:
    touch_images(tmp_path, "a.png", "b.png")
    assert plan_jobs(["-"], None, X2).jobs == [Job(None, None)]
    assert plan_jobs(["-"], "-", X2).jobs == [Job(None, None)]
    assert plan_jobs(["-"], str(tmp_path), X2).jobs == [Job(None, tmp_path / "stdin_x2.png")]
    assert plan_jobs([str(tmp_path / "a.png")], "-", X2).jobs == [Job(tmp_path / "a.png", None)]
    with pytest.raises(UsageError, match="cannot be combined"):
        plan_jobs(["-", str(tmp_path / "a.png")], None, X2)
    with pytest.raises(UsageError, match="exactly one input"):
        plan_jobs([str(tmp_path / "a.png"), str(tmp_path / "b.png")], "-", X2)


# --- running --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def denoiser() -> Restorer:
    return Restorer.from_weights(DN_COLOR, RestoreSettings(device="cpu", tile=0))


def test_run_skips_existing_outputs_redoes_them_with_overwrite_and_goes_on_after_failures(
    tmp_path: Path, denoiser: Restorer
) -> None:
    touch_images(tmp_path, "a.png", "b.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    sources = [str(tmp_path / name) for name in ("a.png", "bad.png", "b.png")]
    jobs = plan_jobs(sources, str(tmp_path / "out"), X2).jobs
    restore = lambda image, job: denoiser.restore_image(image)  # noqa: E731
    first = run_jobs(jobs, restore, X2)
    assert [r.status for r in first.results] == ["done", "failed", "done"] and first.exit_code == 1
    assert first.results[1].error == f"{tmp_path / 'bad.png'}: corrupt or truncated PNG header"
    inode = (tmp_path / "out" / "a_x2.png").stat().st_ino
    again = run_jobs(jobs, restore, X2)
    assert [r.status for r in again.results] == ["skipped", "failed", "skipped"]
    assert (tmp_path / "out" / "a_x2.png").stat().st_ino == inode
    redo = run_jobs(jobs, restore, OutputOptions("_x2", overwrite=True))
    assert [r.status for r in redo.results] == ["done", "failed", "done"]
    assert (tmp_path / "out" / "a_x2.png").stat().st_ino != inode  # a new file, renamed into place
    assert visible(tmp_path / "out") == ["a_x2.png", "b_x2.png"]


def test_results_carry_their_provenance_and_are_skipped_or_redone_by_it(
    tmp_path: Path, denoiser: Restorer
) -> None:
    """Issue 18.2: no record beside the output; same input and settings skip, other settings or a
    touched input redo it with a note."""
    touch_images(tmp_path, "a.png")
    source, made = tmp_path / "a.png", tmp_path / "out" / "a_x2.png"
    jobs = plan_jobs([str(source)], f"{tmp_path / 'out'}/", X2).jobs
    restore = lambda image, job: denoiser.restore_image(image)  # noqa: E731
    first = run_jobs(jobs, restore, OutputOptions("_x2", settings="a")).results[0]
    assert first.status == "done" and first.note is None and os.listdir(made.parent) == ["a_x2.png"]
    recorded = Provenance.from_text(read_provenance(made) or "")
    assert recorded == Provenance("a.png", ContentId.of(source.read_bytes()), place_of(source), "a")
    assert run_jobs(jobs, restore, OutputOptions("_x2", settings="a")).results[0].status == "skipped"
    other = run_jobs(jobs, restore, OutputOptions("_x2", settings="b")).results[0]
    assert (other.status, other.note) == (
        "done",
        f"{source}: {made} was made from this input with other settings; redone",
    )
    save_rgb(source, height=8, width=8, seed=5)  # the input changes in place
    touched = run_jobs(jobs, restore, OutputOptions("_x2", settings="b")).results[0]
    assert touched.status == "done"
    assert touched.note == f"{source}: {made} was made from an earlier version of this input; redone"
    assert Provenance.from_text(read_provenance(made) or "").content == ContentId.of(source.read_bytes())


def test_outputs_of_another_input_or_not_made_by_swinir_are_kept(tmp_path: Path, denoiser: Restorer) -> None:
    touch_images(tmp_path, "cam1/IMG.png", "cam2/IMG.png", "user.png")
    save_rgb(tmp_path / "cam2" / "IMG.png", height=8, width=8, seed=2)
    restore = lambda image, job: denoiser.restore_image(image)  # noqa: E731
    out = f"{tmp_path / 'out'}/"
    assert run_jobs(plan_jobs([str(tmp_path / "cam1" / "IMG.png")], out, X2).jobs, restore, X2).exit_code == 0
    made = (tmp_path / "out" / "IMG_x2.png").read_bytes()
    cam2 = plan_jobs([str(tmp_path / "cam2" / "IMG.png")], out, X2).jobs
    [other] = run_jobs(cam2, restore, X2).results
    assert other.status == "failed" and other.error == (
        f"{tmp_path / 'cam2' / 'IMG.png'}: {tmp_path / 'out' / 'IMG_x2.png'} exists, made from another "
        "IMG.png (--overwrite replaces it, --suffix or --output avoids it)"
    )
    assert (tmp_path / "out" / "IMG_x2.png").read_bytes() == made
    assert run_jobs(cam2, restore, OutputOptions("_x2", overwrite=True)).results[0].status == "done"

    save_rgb(
        tmp_path / "out" / "user_x2.png", height=8, width=8, seed=7
    )  # the user's own file, in the output folder
    mine = (tmp_path / "out" / "user_x2.png").read_bytes()
    user = plan_jobs([str(tmp_path / "user.png")], out, X2).jobs
    for overwrite in (False, True):
        [kept] = run_jobs(user, restore, OutputOptions("_x2", overwrite=overwrite)).results
        assert kept.status == "failed" and "carries no swinir provenance, so it is kept" in kept.error
    assert (tmp_path / "out" / "user_x2.png").read_bytes() == mine
    named = plan_jobs([str(tmp_path / "user.png")], str(tmp_path / "out" / "user_x2.png"), X2).jobs
    [refused] = run_jobs(named, restore, X2).results
    assert refused.status == "failed" and "--overwrite replaces it, as --output names it" in refused.error
    assert run_jobs(named, restore, OutputOptions("_x2", overwrite=True)).results[0].status == "done"


@pytest.mark.parametrize(
    "options", [OutputOptions("_x2", format="bmp"), OutputOptions("_x2", strip_metadata=True)]
)
def test_outputs_without_provenance_are_neither_skipped_nor_replaced(
    tmp_path: Path, denoiser: Restorer, options: OutputOptions
) -> None:
    touch_images(tmp_path, "a.png")
    jobs = plan_jobs([str(tmp_path / "a.png")], None, options).jobs
    restore = lambda image, job: denoiser.restore_image(image)  # noqa: E731
    assert run_jobs(jobs, restore, options).results[0].status == "done"
    made = jobs[0].target.read_bytes()
    for overwrite in (False, True):
        [again] = run_jobs(jobs, restore, dataclasses.replace(options, overwrite=overwrite)).results
        assert again.status == "failed" and "carries no swinir provenance" in again.error
    assert jobs[0].target.read_bytes() == made


def test_an_earlier_versions_record_is_honoured_once_then_removed(tmp_path: Path, denoiser: Restorer) -> None:
    touch_images(tmp_path, "a.png", "a_x2.png", "b.png", "b_x2.png")  # b_x2.png: recorded as made from a.png
    source = tmp_path / "a.png"
    for output in ("a_x2.png", "b_x2.png"):
        status = source.stat()
        record = {"source": str(source.resolve()), "size": status.st_size, "mtime_ns": status.st_mtime_ns}
        (tmp_path / f".{output}.source.json").write_text(json.dumps(record))
    jobs = plan_jobs([str(tmp_path / "a.png"), str(tmp_path / "b.png")], None, X2).jobs
    restore = lambda image, job: denoiser.restore_image(image)  # noqa: E731
    first = run_jobs(jobs, restore, X2).results
    assert [r.status for r in first] == ["skipped", "failed"]
    assert first[1].error.endswith(
        f"exists, made from {source.resolve()} (--overwrite replaces it, --suffix or --output avoids it)"
    )
    os.utime(
        source, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9)
    )  # touched: made from an earlier version
    [redone] = run_jobs(jobs[:1], restore, X2).results
    assert redone.status == "done" and "earlier version of this input; redone" in redone.note
    assert not (tmp_path / ".a_x2.png.source.json").exists() and read_provenance(tmp_path / "a_x2.png")
    assert run_jobs(jobs[:1], restore, X2).results[0].status == "skipped"


def test_unwritable_output_and_pixel_limit_fail_their_job_only(tmp_path: Path, denoiser: Restorer) -> None:
    touch_images(tmp_path, "a.png")
    (tmp_path / "blocker").write_text("a file where a folder should be")
    restore = lambda image, job: denoiser.restore_image(image)  # noqa: E731
    unwritable = [Job(tmp_path / "a.png", tmp_path / "blocker" / "a_x2.png")]
    [result] = run_jobs(unwritable, restore, X2).results
    assert (
        result.status == "failed" and "blocker" in result.error and "cannot create its folder" in result.error
    )
    [limited] = run_jobs(
        [Job(tmp_path / "a.png", tmp_path / "small.png")], restore, X2, max_pixels=63
    ).results
    assert limited.status == "failed" and "8x8 = 64 pixels exceeds the limit of 63" in limited.error
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")  # unreadable even to root
    [unreadable] = run_jobs(plan_jobs([str(tmp_path / "dangling.png")], None, X2).jobs, restore, X2).results
    assert unreadable.status == "failed"
    assert unreadable.error.startswith(f"{tmp_path / 'dangling.png'}: cannot read")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "blocker", "dangling.png"]


def test_an_output_name_over_the_limit_fails_its_input_and_the_batch_goes_on(tmp_path: Path) -> None:
    """A 254-byte input name plus ``_x2`` is 257 bytes: one line naming the input, not ``File name too
    long`` raised in the read-ahead thread, which aborted the batch (issue 18, item 4)."""
    long_name = "a" * 250 + ".png"
    touch_images(tmp_path / "in", long_name, "b.png")
    (tmp_path / "out").mkdir()  # an existing folder: looking for the output raised ENAMETOOLONG
    jobs = plan_jobs([str(tmp_path / "in")], str(tmp_path / "out"), X2).jobs
    summary = run_jobs(jobs, lambda image, job: image, X2)
    assert [(Path(r.job.input_name).name, r.status) for r in summary.results] == [
        (long_name, "failed"),
        ("b.png", "done"),
    ]
    assert summary.results[0].error == (
        f"{tmp_path / 'in' / long_name}: the output name {'a' * 250}_x2.png is 257 bytes, over the limit "
        "of 255 of its file system (a shorter --suffix or input name avoids it)"
    )
    assert visible(tmp_path / "out") == ["b_x2.png"]


def test_a_suffix_that_is_a_path_is_refused() -> None:
    """A suffix holding a separator would write outside the output folder (issue 18, item 4)."""
    for suffix in ("a/b", "/../../x", "a\\b", "a\0b"):
        with pytest.raises(UsageError, match="a suffix is part of a file name"):
            OutputOptions(suffix)


def test_control_characters_and_undecodable_bytes_in_names_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ESC sequence in a file name reached the terminal raw and a newline split the one-line error; a
    name that is not UTF-8 is shown by its bytes, and ``--json`` gives them exactly (issue 18, item 4)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad\x1b[31m\nname.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    latin = folder / os.fsdecode(b"caf\xe9.png")
    save_rgb(latin, height=8, width=8)
    options = [
        "--json",
        "--quiet",
        "--sigma",
        "15",
        "--weights",
        str(DN_COLOR),
        "--device",
        "cpu",
        "--tile",
        "0",
    ]
    assert main(["denoise", str(folder), "-o", str(tmp_path / "out"), *options]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {folder}/bad\\x1b[31m\\x0aname.png: corrupt or truncated PNG header\n"
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["status"] for r in records] == ["failed", "done"]
    assert records[0]["input"] == str(folder / "bad\x1b[31m\nname.png")  # JSON escapes it losslessly
    done = records[1]
    assert done["input"] == f"{folder}/caf\\xe9.png"
    assert base64.b64decode(done["input_bytes"]) == os.fsencode(latin)
    output = tmp_path / "out" / os.fsdecode(b"caf\xe9_denoised.png")
    assert base64.b64decode(done["output_bytes"]) == os.fsencode(output)
    assert read_image(output).width == 8


def test_a_usage_error_stops_the_batch(tmp_path: Path) -> None:
    touch_images(tmp_path, "a.png", "b.png")
    calls = []

    def refuse(image: LoadedImage, job: Job) -> LoadedImage:
        calls.append(job)
        raise UsageError("model upscales x2, not x4")

    jobs = plan_jobs([str(tmp_path)], str(tmp_path / "out"), X2).jobs
    with pytest.raises(UsageError):
        run_jobs(jobs, refuse, X2)
    assert len(calls) == 1 and not (tmp_path / "out").exists()


# --- after the model --------------------------------------------------------------------------------


def test_output_size_from_outscale_width_or_height() -> None:
    assert output_size((24, 20)) is None
    assert output_size((24, 20), outscale=1.5) == (36, 30)
    assert output_size((24, 20), outscale=0.01) == (1, 1)
    assert output_size((24, 20), width=60) == (60, 50)
    assert output_size((24, 20), height=10) == (12, 10)
    assert output_size((24, 20), width=7, height=9) == (7, 9)
    with pytest.raises(UsageError, match="cannot be combined"):
        output_size((24, 20), outscale=2, height=9)
    with pytest.raises(UsageError, match="positive"):
        output_size((24, 20), outscale=0)
    with pytest.raises(UsageError, match="positive"):
        output_size((24, 20), outscale=float("nan"))
    for absurd in (1e308, float("inf")):  # larger than any side can be, for any input
        with pytest.raises(UsageError, match="every output side over 65535"):
            output_size((1, 1), outscale=absurd)


def test_resize_keeps_depth_gray_and_alpha_and_picks_the_filter() -> None:
    rng = np.random.default_rng(1)
    gray16 = rng.integers(0, 65536, (20, 24, 1), dtype=np.uint16)
    alpha16 = rng.integers(0, 65536, (20, 24), dtype=np.uint16)
    image = LoadedImage(pixels=gray16, alpha=alpha16)
    smaller = resize_image(image, (12, 10))
    assert smaller.pixels.shape == (10, 12, 1) and smaller.pixels.dtype == np.uint16
    assert np.array_equal(
        smaller.pixels[..., 0], cv2.resize(gray16[..., 0], (12, 10), interpolation=cv2.INTER_AREA)
    )
    assert np.array_equal(smaller.alpha, cv2.resize(alpha16, (12, 10), interpolation=cv2.INTER_AREA))
    larger = resize_image(image, (30, 25))
    assert np.array_equal(larger.alpha, cv2.resize(alpha16, (30, 25), interpolation=cv2.INTER_LANCZOS4))
    assert resize_image(image, (24, 20)) is image


def test_alpha_through_a_gray_model() -> None:
    settings = RestoreSettings(device="cpu", tile=0, alpha="model")
    restorer = Restorer.from_weights(TINY / "dn_gray.pth", settings)
    alpha = np.random.default_rng(2).integers(0, 256, (18, 21), dtype=np.uint8)
    image = LoadedImage(np.zeros((18, 21, 1), np.uint8), alpha=alpha)
    restored = restorer.restore_image(image).alpha
    assert restored.shape == alpha.shape and restored.dtype == np.uint8
    assert np.array_equal(restored, restorer.restore_pixels(alpha[..., None])[..., 0])


# --- issue 5 acceptance, through the command ---------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def make_mixed_folder(folder: Path) -> None:
    """Five good images (RGB, gray, RGBA, 16-bit, EXIF-rotated) and five bad files."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    save_rgb(folder / "rgb.png")
    save_rgb(folder / "gray.png", mode="L", seed=1)
    save_rgb(folder / "rgba.png", mode="RGBA", seed=2)
    cv2.imwrite(str(folder / "deep16.png"), rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 24 wide x 16 high, shown rotated 90 degrees clockwise: 16 wide x 24 high
    Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(folder / "rotated.jpg", exif=exif)
    (folder / "empty.png").write_bytes(b"")
    good_png = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(good_png, "PNG")
    corrupt = bytearray(good_png.getvalue())
    start = corrupt.index(b"IDAT") + 24
    corrupt[start : start + 40] = bytes(40)
    (folder / "corrupt.png").write_bytes(bytes(corrupt))
    jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (
        png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(bytes(100))) + png_chunk(b"IEND", b"")
    )
    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bomb)
    (folder / "notes.txt").write_text("a text file, not an image\n")


GOOD = ["deep16", "gray", "rgb", "rgba", "rotated"]
BAD = ["bomb.png", "corrupt.png", "empty.png", "truncated.jpg"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def json_lines(result: subprocess.CompletedProcess[bytes]) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def test_mixed_folder_good_and_bad_files_then_resume_then_overwrite(tmp_path: Path) -> None:
    folder, out = tmp_path / "mixed", tmp_path / "out"
    make_mixed_folder(folder)
    before = snapshot(folder)
    command = [
        "upscale",
        folder,
        "-o",
        out,
        "--scale",
        "2",
        "--weights",
        SR_X2,
        "--device",
        "cpu",
        "--tile",
        "0",
    ]
    first = run_swinir(*command, "--json")

    assert first.returncode == 1
    assert visible(out) == [f"{name}_x2.png" for name in GOOD]  # nothing stray
    assert sorted(os.listdir(out)) == [f"{name}_x2.png" for name in GOOD]  # no hidden records
    assert snapshot(folder) == before
    messages = first.stderr.decode()
    assert "Traceback" not in messages
    for bad in [*BAD, "notes.txt"]:
        assert sum(bad in line for line in messages.splitlines()) >= 1, bad
    records = json_lines(first)
    statuses = {Path(record["input"]).name: record["status"] for record in records}
    good_files = [next(folder.glob(f"{name}.*")).name for name in GOOD]
    assert statuses == {name: "done" for name in good_files} | {name: "failed" for name in BAD} | {
        "notes.txt": "ignored"
    }
    assert all(
        set(record) == {"input", "output", "model", "seconds", "status", "error"} for record in records
    )
    assert all((record["error"] is None) == (record["status"] == "done") for record in records)
    assert messages.splitlines()[-1].startswith("5 done, 0 skipped, 4 failed, 1 ignored (not images) in ")

    for name in GOOD:  # each output is exactly what the API makes of its input
        source = next(folder.glob(f"{name}.*"))
        produced, expected = read_image(out / f"{name}_x2.png"), api_restore(SR_X2, source)
        assert_nearly_equal(produced.pixels, expected.pixels)
        assert (produced.alpha is None) == (expected.alpha is None)
        if expected.alpha is not None:
            assert_nearly_equal(produced.alpha, expected.alpha)
    assert read_image(out / "gray_x2.png").is_gray
    assert read_image(out / "deep16_x2.png").bit_depth == 16
    assert read_image(out / "rotated_x2.png").pixels.shape == (48, 32, 3)
    rgba = read_image(out / "rgba_x2.png")
    assert rgba.alpha is not None and rgba.alpha.shape == (40, 48)

    inodes = {name: (out / name).stat().st_ino for name in os.listdir(out)}
    again = run_swinir(*command, "--json")
    assert again.returncode == 1
    assert sorted(r["status"] for r in json_lines(again)) == ["failed"] * 4 + ["ignored"] + ["skipped"] * 5
    assert {name: (out / name).stat().st_ino for name in os.listdir(out)} == inodes
    assert again.stderr.decode().splitlines()[-1].startswith("0 done, 5 skipped, 4 failed, 1 ignored")
    redo = run_swinir(*command, "--overwrite")
    assert redo.returncode == 1 and redo.stdout == b""
    assert all((out / name).stat().st_ino != inode for name, inode in inodes.items())
    assert sorted(os.listdir(out)) == sorted(inodes) and snapshot(folder) == before


def test_stdin_to_stdout_gives_the_same_pixels_as_file_to_file(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "in.png", height=24, width=20, mode="RGBA")
    common = ["--sigma", "15", "--weights", DN_COLOR, "--device", "cpu", "--tile", "0"]
    piped = run_swinir("denoise", "-", "-o", "-", *common, stdin=image.read_bytes())
    to_file = run_swinir("denoise", image, "-o", tmp_path / "out.png", *common)
    assert piped.returncode == 0 and to_file.returncode == 0, (piped.stderr, to_file.stderr)
    assert piped.stderr == b""
    (tmp_path / "piped.png").write_bytes(piped.stdout)
    from_pipe, from_file = read_image(tmp_path / "piped.png"), read_image(tmp_path / "out.png")
    assert np.array_equal(from_pipe.pixels, from_file.pixels)
    assert np.array_equal(from_pipe.alpha, from_file.alpha)


def test_stdin_longer_than_the_pixel_limit_allows_is_refused_after_reading_only_that(tmp_path: Path) -> None:
    image = save_rgb(tmp_path / "in.png", height=24, width=20)
    tailed = with_sparse_tail(tmp_path / "tailed.png", image.read_bytes(), 256 << 20)
    command = f"cat {tailed} | {SWINIR} upscale - -w {SR_X2} --device cpu -o out.png --max-pixels 2000"
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True)
    limit = ENCODED_EXTRA_BYTES + ENCODED_BYTES_PER_PIXEL * 2000
    assert result.returncode == 1, result.stderr
    assert (
        f"<stdin>: more than {limit} bytes, more than an image within the limit of 2000 pixels can take "
        "(--max-pixels raises the limit)"
    ) in result.stderr.decode()
    assert b"Traceback" not in result.stderr and not (tmp_path / "out.png").exists()


def test_recursive_mirrors_the_tree_with_non_ascii_names(tmp_path: Path) -> None:
    folder = tmp_path / "фото"
    touch_images(folder, "été.png", "sub/子.png", "sub/deeper/ok.png")
    (folder / "sub" / "lisez-moi.md").write_text("pas une image")
    result = run_swinir(
        "denoise", folder, "-r", "--json", "--quiet", "--sigma", "15",
        "--weights", DN_COLOR, "--device", "cpu", "--tile", "0",
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == b""
    out = tmp_path / "фото_denoised"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name[0] != ".") == [
        "sub/deeper/ok_denoised.png",
        "sub/子_denoised.png",
        "été_denoised.png",
    ]
    records = json_lines(result)
    assert {(Path(r["input"]).name, r["status"]) for r in records} == {
        ("été.png", "done"),
        ("子.png", "done"),
        ("ok.png", "done"),
        ("lisez-moi.md", "ignored"),
    }
    assert {r["output"] for r in records if r["status"] == "done"} == {
        str(out / "été_denoised.png"),
        str(out / "sub" / "子_denoised.png"),
        str(out / "sub" / "deeper" / "ok_denoised.png"),
    }


#: The options of the runs that must still be busy when a signal comes: 16-pixel tiles, many of them.
SLOW_DENOISE = [
    "--sigma", "15", "--weights", str(DN_COLOR), "--device", "cpu", "--tile", "16", "--tile-overlap", "8",
]  # fmt: skip


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_ends_the_batch_as_ctrl_c_does(tmp_path: Path, stop: signal.Signals) -> None:
    """SIGTERM (``timeout``, ``docker stop``, systemd) and SIGHUP (a closed terminal) are Ctrl-C: exit 130,
    the summary, an ``interrupted`` record, and no partial or temporary file (issue 18, item 3)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    save_rgb(folder / "a_small.png", height=16, width=16)
    save_rgb(folder / "b_large.png", height=320, width=320)  # 1600-odd tiles: seconds even on a fast path
    command = [str(SWINIR), "denoise", str(folder), "-o", str(out), "--json", *SLOW_DENOISE]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "a_small_denoised.png").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the small image is written beside the large one's restoring (overlapped I/O)
        time.sleep(1.0)  # well inside the large image's tiles
        process.send_signal(stop)
        records, remaining = (part.decode() for part in process.communicate(timeout=60))
    finally:
        process.kill()
    assert process.returncode == 130, remaining
    assert "Traceback" not in remaining
    assert remaining.splitlines()[-1].startswith("error: interrupted: 1 done, 0 skipped, 0 failed")
    statuses = [(Path(r["input"]).name, r["status"]) for r in map(json.loads, records.splitlines())]
    assert statuses == [("a_small.png", "done"), ("b_large.png", "interrupted")]
    assert sorted(os.listdir(out)) == ["a_small_denoised.png"]  # no .tmp
    assert read_image(out / "a_small_denoised.png").pixels.shape == (16, 16, 3)


def test_two_runs_writing_one_output_lose_no_result(tmp_path: Path) -> None:
    """``cam1/IMG_1.png`` and ``cam2/IMG_1.png`` into one ``-o out/``: the first run is frozen (SIGSTOP) once
    it found no output and began the image, the second writes its result, then the first goes on. It must
    not replace that result: its input fails with a line, and the second's file stays (issue 18, item 3;
    both runs exited 0 with one result silently lost)."""
    out = tmp_path / "out"
    for camera, seed in (("cam1", 1), ("cam2", 2)):
        (tmp_path / camera).mkdir()
        save_rgb(tmp_path / camera / "IMG_1.png", height=160, width=160, seed=seed)
    save_rgb(tmp_path / "cam1" / "A_first.png", height=8, width=8)
    inputs = [str(tmp_path / "cam1" / name) for name in ("A_first.png", "IMG_1.png")]
    command = [str(SWINIR), "denoise", *inputs, "-o", str(out), "--json", *SLOW_DENOISE]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "A_first_denoised.png").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # it found no out/IMG_1_denoised.png and is restoring its image (seconds of tiles)
        first.send_signal(signal.SIGSTOP)
        second = run_swinir(
            "denoise", tmp_path / "cam2" / "IMG_1.png", "-o", f"{out}/", "--json", *SLOW_DENOISE
        )
        written = (out / "IMG_1_denoised.png").read_bytes()
        first.send_signal(signal.SIGCONT)
        records, errors = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.returncode == 0, second.stderr
    assert [json.loads(line)["status"] for line in second.stdout.splitlines()] == ["done"]
    assert first.returncode == 1, errors
    results = [
        (Path(r["input"]).name, r["status"], r["error"]) for r in map(json.loads, records.splitlines())
    ]
    assert results[0] == ("A_first.png", "done", None)
    assert results[1][:2] == ("IMG_1.png", "failed")
    # Caught while restoring, it finds the result at its publish; caught before its image began (a slow
    # machine), it finds it at the start: either way that result is kept and the input fails with a line.
    assert "IMG_1_denoised.png: another process wrote this file meanwhile" in results[1][2] or (
        "IMG_1_denoised.png exists, made from another IMG_1.png" in results[1][2]
    )
    assert f"error: {results[1][2]}" in errors.decode()
    assert (out / "IMG_1_denoised.png").read_bytes() == written  # the second run's result, kept
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


def test_a_glob_batch_run_twice_never_restores_its_own_outputs(tmp_path: Path) -> None:
    save_rgb(tmp_path / "a.png")
    save_rgb(tmp_path / "b.png", seed=1)
    command = ("upscale", "*.png", "-w", SR_X2, "--device", "cpu")
    assert run_swinir(*command, cwd=tmp_path).returncode == 0
    again = run_swinir(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["a.png", "a_x2.png", "b.png", "b_x2.png"]
    assert b"an output of this run, not an input, ignored" in again.stderr


def test_a_users_file_named_like_an_output_survives_overwrite_with_the_glob(tmp_path: Path) -> None:
    """Issue 18.1 through the command: ``'in/*.png' --overwrite`` with the user's own in/photo_x2.png."""
    (tmp_path / "in").mkdir()
    save_rgb(tmp_path / "in" / "photo.png")
    save_rgb(tmp_path / "in" / "photo_x2.png", seed=3)
    mine = (tmp_path / "in" / "photo_x2.png").read_bytes()
    result = run_swinir("upscale", "in/*.png", "-w", SR_X2, "--device", "cpu", "--overwrite", cwd=tmp_path)
    assert result.returncode == 1
    assert (tmp_path / "in" / "photo_x2.png").read_bytes() == mine
    assert b"an output of this run" not in result.stderr
    [error] = [line for line in result.stderr.decode().splitlines() if line.startswith("error:")]
    assert "in/photo.png: the output in/photo_x2.png would replace the input in/photo_x2.png" in error
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [
        "photo.png",
        "photo_x2.png",
        "photo_x2_x2.png",
    ]


def test_special_files_through_globs_and_symlinks_are_skipped(tmp_path: Path) -> None:
    save_rgb(tmp_path / "a.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "pipe.png")
    globbed = run_swinir("upscale", "*.png", "-w", SR_X2, "-o", "out/", cwd=tmp_path)
    assert globbed.returncode == 0, globbed.stderr
    assert b"pipe.png: a FIFO, not a regular file, ignored" in globbed.stderr
    named = run_swinir("upscale", "link.png", "-w", SR_X2, cwd=tmp_path)
    assert named.returncode == 1 and b"link.png: a FIFO, not a regular file" in named.stderr


def test_fifos_and_links_to_nothing_inside_folders_are_listed_and_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    touch_images(folder, "a.png")
    touch_images(folder / "sub", "b.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "gone.png").symlink_to(folder / "nothing.png")
    os.mkfifo(folder / "sub" / "deep.png")
    flat = plan_jobs([str(folder)], str(tmp_path / "out"), X2)
    assert [job.source for job in flat.jobs] == [folder / "a.png"]
    assert flat.ignored == [
        (folder / "gone.png", "a symbolic link to nothing"),
        (folder / "pipe.png", "a FIFO, not a regular file"),
    ]
    assert flat.unentered == [(folder, 1)]  # sub/ was not entered: said, not silent
    deep = plan_jobs([str(folder)], str(tmp_path / "out"), X2, recursive=True)
    assert [job.source for job in deep.jobs] == [folder / "a.png", folder / "sub" / "b.png"]
    assert (folder / "sub" / "deep.png", "a FIFO, not a regular file") in deep.ignored
    assert deep.unentered == []
    summary = run_swinir("upscale", folder, "-w", SR_X2, "-o", tmp_path / "out")
    assert summary.returncode == 0, summary.stderr
    said = summary.stderr.decode()
    assert f"{folder / 'pipe.png'}: a FIFO, not a regular file, ignored" in said
    assert f"{folder / 'gone.png'}: a symbolic link to nothing, ignored" in said
    assert said.splitlines()[-1].startswith("1 done, 0 skipped, 0 failed, 2 ignored in ")


def test_the_output_pixel_limit_holds_while_another_thread_reads_images(tmp_path: Path) -> None:
    """Reads switch Pillow's own limit off while they decode; the overlapped batch reads the next image on
    a thread while the model thread checks the output size, which once saw no limit at all (a crash)."""
    image = tmp_path / "small.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    stop = threading.Event()

    def read_forever() -> None:
        while not stop.is_set():
            read_image(image)

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        limits = {output_pixel_limit(None) for _ in range(20000)}
    finally:
        stop.set()
        reader.join()
    assert limits == {16 * Image.MAX_IMAGE_PIXELS}
