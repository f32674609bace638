"""`swinir models` and `swinir download`, run through the real command line against a loopback server."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    REFERENCE,
    SWINIR,
    assert_one_clean_error_line,
    official_models,
    require_shared,
    run_python,
    run_swinir,
    save_rgb,
    stderr_lines,
)
from hostile import FILE_NAME, TINY_BYTES, TINY_SHA256, WeightServer, register
from PIL import Image

from swinir_cli.cli import main
from swinir_cli.registry import load_registry

require_shared()


def models_json(capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, dict]:
    code = main(["models", "--json", *options])
    return code, json.loads(capsys.readouterr().out)


def test_models_json_lists_all_released_files_with_their_pinned_hashes(cache, capsys) -> None:
    code, document = models_json(capsys)
    assert code == 0
    assert document["cache_dir"] == str(cache)
    by_file = {record["file"]: record for record in document["models"]}
    rows = official_models()
    assert len(by_file) == len(rows) == 31
    for row in rows:
        record = by_file[row["file"]]
        assert (record["sha256"], record["size"], record["url"]) == (row["sha256"], row["size"], row["url"])
        assert record["pinned"] == (row["sha256"] is not None)
        assert record["downloaded"] is False
    assert by_file["003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth"]["name"] == "real-x4"
    assert by_file["005_colorDN_DFWB_s128w8_SwinIR-M_noise25.pth"]["sigma"] == 25


def test_models_table_shows_names_settings_and_pinning(cache, capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for text in (
        "real-x4",
        "real-large-x4-psnr",
        "denoise-gray-50",
        "x4",
        "sigma 25",
        "quality 40",
        "unpinned",
    ):
        assert text in out
    assert "67.1 MB" in out and "11.7M" in out


def test_download_fetches_verifies_and_prepares_the_fast_copy(
    tmp_path, monkeypatch, server: WeightServer, cache: Path, capsys
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
    assert main(["download", "tiny-x2"]) == 0
    err = capsys.readouterr().err
    assert "tiny-x2: downloaded 1.5 MB and verified" in err  # plain lines: stderr is not a terminal here
    assert sorted(p.name for p in cache.iterdir()) == ["tiny-x2"]  # each entry has its own folder
    assert sorted(p.name for p in (cache / "tiny-x2").iterdir()) == [
        ".locks",  # lock files stay (removing one is not safe); the copy has its own recorded hash
        FILE_NAME,
        "sr_pixelshuffle_x2.safetensors",
        "sr_pixelshuffle_x2.safetensors.sha256",
    ]
    assert hashlib.sha256((cache / "tiny-x2" / FILE_NAME).read_bytes()).hexdigest() == TINY_SHA256
    _, document = models_json(capsys)
    tiny = next(record for record in document["models"] if record["name"] == "tiny-x2")
    assert tiny["downloaded"] is True and tiny["path"] == str(cache / "tiny-x2" / FILE_NAME)
    assert main(["download", "tiny-x2"]) == 0
    assert "tiny-x2: was already downloaded and verified" in capsys.readouterr().err
    assert len(server.requests) == 1


def test_download_with_a_wrong_hash_fails_on_one_line_and_leaves_nothing(
    tmp_path, monkeypatch, server: WeightServer, cache: Path, capsys
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256="f" * 64)
    assert main(["download", "tiny-x2"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("error: model 'tiny-x2'") and "f" * 64 in lines[0] and TINY_SHA256 in lines[0]
    assert lines[1] == "error: 1 of 1 model(s) could not be fetched: tiny-x2"
    assert [p.name for p in (cache / "tiny-x2").iterdir() if p.name != ".locks"] == []


def test_download_needs_names_or_all(cache, capsys) -> None:
    assert main(["download"]) == 2
    said = capsys.readouterr().err  # what to pass: a name, where the names are, or --all
    assert said.startswith("error: name the models to download (swinir download real-x4; ")
    assert "`swinir models` lists them" in said and "--all" in said
    assert main(["download", "real-x4", "--all"]) == 2
    assert "not both" in capsys.readouterr().err


def test_ctrl_c_during_a_download_says_interrupted_on_one_line(tmp_path, monkeypatch, server, cache) -> None:
    server.trickle_s = 0.05  # a byte every 50 ms: the download is still running when SIGINT comes
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SWINIR_DEBUG", None)
    with subprocess.Popen(
        [SWINIR, "download", "tiny-x2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as process:
        deadline = time.monotonic() + 60
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.requests, "the download never started"
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.decode().splitlines() == ["error: interrupted"]


def test_download_of_an_unknown_name_suggests_close_ones(cache, capsys) -> None:
    assert main(["download", "real-4x"]) == 2  # a usage error
    assert "no model named 'real-4x'" in capsys.readouterr().err


def test_download_offline_says_how_to_get_the_model(tmp_path, monkeypatch, server, cache, capsys) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}")
    monkeypatch.setenv("SWINIR_OFFLINE", "1")
    assert main(["download", "tiny-x2"]) == 1
    assert "SWINIR_OFFLINE forbids downloading it" in capsys.readouterr().err
    assert server.requests == []


def test_models_verify_rehashes_and_deletes_a_corrupt_file(
    tmp_path, monkeypatch, server: WeightServer, cache: Path, capsys
) -> None:
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}")
    assert main(["download", "tiny-x2", "--quiet"]) == 0
    code, document = models_json(capsys, "--verify")
    assert code == 0
    tiny = next(record for record in document["models"] if record["name"] == "tiny-x2")
    assert tiny["verified"] is True
    assert next(r for r in document["models"] if r["name"] == "real-x4")["verified"] is None
    (cache / "tiny-x2" / FILE_NAME).write_bytes(b"bitrot")
    code, document = models_json(capsys, "--verify")
    assert code == 1
    tiny = next(record for record in document["models"] if record["name"] == "tiny-x2")
    assert tiny["verified"] is False and "does not match" in tiny["problem"]
    assert not (cache / "tiny-x2" / FILE_NAME).exists()


@pytest.fixture
def tiny_image(tmp_path: Path) -> tuple[Path, np.ndarray]:
    case = np.load(REFERENCE / "tiny" / "sr_pixelshuffle_x2.npz")
    path = tmp_path / "in.png"
    Image.fromarray(case["image_u8"]).save(path)
    return path, case["pipeline_u8"]


def upscale(image: Path, output: Path, *source: str) -> int:
    return main(["upscale", str(image), *source, "--tile", "0", "-o", str(output), "--overwrite", "--quiet"])


def test_upscale_with_a_registry_model_downloads_verifies_runs_and_then_works_without_the_server(
    tmp_path, monkeypatch, server: WeightServer, cache: Path, tiny_image
) -> None:
    image, golden = tiny_image
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
    assert upscale(image, tmp_path / "model.png", "--model", "tiny-x2") == 0
    assert len(server.requests) == 1
    assert (cache / "tiny-x2" / "sr_pixelshuffle_x2.safetensors").is_file()
    from_model = np.asarray(Image.open(tmp_path / "model.png"))
    assert upscale(image, tmp_path / "pth.png", "--weights", str(REFERENCE / "tiny" / FILE_NAME)) == 0
    # The cached safetensors copy and the published .pth give bit-identical outputs...
    assert np.array_equal(from_model, np.asarray(Image.open(tmp_path / "pth.png")))
    # ...which match the reference implementation's (to the tolerance the pipeline's own tests use).
    assert from_model.shape == golden.shape and np.mean(from_model == golden) > 0.999
    assert np.abs(from_model.astype(int) - golden).max() <= 1
    server.stop()
    assert upscale(image, tmp_path / "again.png", "--model", "tiny-x2") == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), from_model)


def test_upscale_with_a_wrong_hash_fails_on_one_line_and_caches_nothing(
    tmp_path, monkeypatch, server: WeightServer, cache: Path, tiny_image, capsys
) -> None:
    image, _ = tiny_image
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256="e" * 64)
    assert upscale(image, tmp_path / "out.png", "--model", "tiny-x2") != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "e" * 64 in err and TINY_SHA256 in err
    assert [p.name for p in (cache / "tiny-x2").iterdir() if p.name != ".locks"] == []
    assert not (tmp_path / "out.png").exists()


def test_upscale_offline_with_nothing_cached_is_a_clear_error_without_network(
    tmp_path, monkeypatch, server: WeightServer, cache: Path, tiny_image, capsys
) -> None:
    image, _ = tiny_image
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}")
    monkeypatch.setenv("SWINIR_OFFLINE", "1")
    assert upscale(image, tmp_path / "out.png", "--model", "tiny-x2") != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "swinir download tiny-x2" in err
    assert server.requests == []


def test_a_model_that_cannot_be_had_is_one_error_for_the_whole_batch(tmp_path: Path) -> None:
    """Offline with an empty cache: the first image that needs the model stops the batch (fixed or chosen
    per image alike), with one line saying how to get it."""
    for name in ("a.png", "b.png", "c.png"):
        save_rgb(tmp_path / name)
    env = {"SWINIR_OFFLINE": "1", "SWINIR_CACHE_DIR": str(tmp_path / "cache")}
    for command in (["denoise", "--sigma", "15"], ["upscale", "-s", "2"]):
        result = run_swinir(*command, "a.png", "b.png", "c.png", cwd=tmp_path, env=env)
        assert result.returncode == 1, result.stderr
        errors = [line for line in stderr_lines(result) if line.startswith("error:")]
        assert len(errors) == 1 and "swinir download" in errors[0], stderr_lines(result)
        assert "Traceback" not in result.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png") == ["a.png", "b.png", "c.png"]


def test_models_shows_every_name_whole_at_80_columns(tmp_path: Path) -> None:
    result = run_swinir("models", env={"COLUMNS": "80", "SWINIR_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    assert all(len(line) <= 80 for line in lines)
    shown = {
        line.split()[0] for line in lines if line.strip() and not line.startswith(("SwinIR", " name", " ─"))
    }
    assert set(load_registry()) <= shown


#: A listing, a help text and a request refused before any image is read, each by the command's ``main``.
WITHOUT_PYTORCH = (["models"], ["upscale", "--help"], ["upscale", "--model", "denoise-color-15", "photo.png"])


def test_listing_help_and_refused_requests_start_without_pytorch(tmp_path: Path) -> None:
    """Importing PyTorch takes most of a start (1.4 of 2 s here); only a command that loads a model pays."""
    code = (
        "import sys\nfrom swinir_cli.cli import main\n"
        f"codes = [main(arguments) for arguments in {WITHOUT_PYTORCH!r}]\n"
        "print(codes, 'torch' in sys.modules, file=sys.stderr)"
    )
    done = run_python(code, env={"SWINIR_CACHE_DIR": str(tmp_path)})
    assert done.stderr.splitlines()[-1] == "[0, 0, 2] False", done.stderr[-2000:]


def test_a_retried_download_during_a_restore_is_named_with_its_model(
    tmp_path, monkeypatch, server: WeightServer, cache: Path, tiny_image, capsys
) -> None:
    image, _ = tiny_image
    register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", size=len(TINY_BYTES))
    server.statuses = [503]  # the first request fails, the retry succeeds
    code = main(["upscale", str(image), "--model", "tiny-x2", "--tile", "0", "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 0 and (tmp_path / "out.png").is_file()
    retry = [line for line in err.splitlines() if "retrying" in line]
    assert len(retry) == 1 and "tiny-x2: attempt 1 failed (HTTP 503" in retry[0]


def test_download_of_an_unknown_name_suggests_close_names_as_model_does(cache: Path) -> None:
    download = run_swinir("download", "nope-x4")
    upscale = run_swinir("upscale", "-m", "nope-x4", "photo.png")
    assert download.returncode == upscale.returncode == 2
    expected = "did you mean real-x4, real-x4-psnr, real-large-x4? (`swinir models` lists them)"
    assert stderr_lines(download) == stderr_lines(upscale)
    assert_one_clean_error_line(download, "no model named 'nope-x4'", expected)


def test_an_unreachable_host_is_one_line_with_the_way_forward_and_its_other_models_are_not_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: WeightServer, cache: Path
) -> None:
    """Connection refused, as offline: one retry, one line saying how to proceed, and the other models of
    that host are listed as not fetched without being tried (`swinir download --all` offline)."""
    dead = server.base_url
    server.stop()
    names = ["one-x2", "two-x2", "three-x2"]
    lines = []
    for name in names:
        lines += [f"[models.{name}]", 'task = "upscale"', "scale = 2", f'url = "{dead}/{name}.pth"']
    (tmp_path / "extra.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SWINIR_REGISTRY", str(tmp_path / "extra.toml"))
    result = run_swinir("download", *names)
    assert result.returncode == 1
    warning, error, summary = stderr_lines(result)
    assert warning.startswith("warning: one-x2: attempt 1 failed (") and warning.endswith("(the last try)")
    assert "1200" not in warning
    assert error == (
        "error: cannot download model 'one-x2': 127.0.0.1 cannot be reached (connection refused); offline? "
        f"run `swinir download one-x2` where the network is reachable or copy one-x2.pth from there to "
        f"{cache / 'one-x2' / 'one-x2.pth'}, or pass --weights FILE"
    )
    assert summary == "error: 3 of 3 model(s) could not be fetched: one-x2, two-x2, three-x2"
