"""Safe checkpoint reading, architecture detection and strict loading for all 31 released layouts."""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    REFERENCE,
    assert_one_clean_error_line,
    official_models,
    random_state_dict,
    require_shared,
    run_many,
    run_python,
    run_swinir,
)
from hostile import (
    FILE_NAME,
    LARGEST_RECORD,
    TINY_BYTES,
    WeightServer,
    checkpoint_claiming,
    register,
    zip_bomb_checkpoint,
)
from PIL import Image
from safetensors.torch import save_file

from swinir_cli.checkpoint import detect_config, load_model, model_from_state_dict, read_state_dict
from swinir_cli.download import verified_weights_path
from swinir_cli.errors import CheckpointError, DownloadError, StateDictMismatchError
from swinir_cli.registry import get_model

require_shared()

OFFICIAL = official_models()


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_BYTES = _png_bytes()
ROW_IDS = [row["file"].removesuffix(".pth") for row in OFFICIAL]


def learnable(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    return {k: v for k, v in shapes.items() if not k.endswith(("attn_mask", "relative_position_index"))}


@pytest.mark.parametrize("row", OFFICIAL, ids=ROW_IDS)
def test_detection_returns_the_authors_config(row: dict) -> None:
    state = {name: torch.empty(shape) for name, shape in row["state_dict"].items()}
    config = asdict(detect_config(state))
    want = {k: v for k, v in row["config"].items() if k != "img_size"}
    assert {**config, "depths": list(config["depths"]), "num_heads": list(config["num_heads"])} == want


def one_row_per_layout(rows: list[dict]) -> list[dict]:
    """The first row of each released layout: rows whose configs and tensors (names and shapes, buffers
    included) agree are the same network to the loader (31 files, 18 layouts)."""
    layouts: dict[str, dict] = {}
    for row in rows:
        config = {k: v for k, v in row["config"].items() if k != "img_size"}
        layouts.setdefault(json.dumps([config, row["state_dict"]], sort_keys=True), row)
    return list(layouts.values())


LAYOUTS = one_row_per_layout(OFFICIAL)


@pytest.mark.parametrize("row", LAYOUTS, ids=[row["file"].removesuffix(".pth") for row in LAYOUTS])
def test_released_layout_loads_strictly_runs_and_rejects_every_mismatch(row: dict) -> None:
    shapes = learnable(row["state_dict"])
    state = random_state_dict(row["state_dict"])  # with the authors' buffers, which are ignored
    model = model_from_state_dict(state)
    assert sum(p.numel() for p in model.parameters()) == row["parameters"]
    scale = row["config"]["upscale"]
    with torch.inference_mode():
        out = model(torch.rand(1, row["config"]["in_chans"], 12, 10))
    assert out.shape == (1, row["config"]["in_chans"], 12 * scale, 10 * scale)
    assert torch.isfinite(out).all()

    victim = "layers.0.residual_group.blocks.1.mlp.fc2.weight"
    assert victim in shapes
    missing = {k: v for k, v in state.items() if k != victim}
    with pytest.raises(StateDictMismatchError, match=f"missing {victim}"):
        model_from_state_dict(missing)

    extra = "layers.0.residual_group.blocks.0.attn.extra_proj.weight"
    with pytest.raises(StateDictMismatchError, match=f"unexpected {extra}"):
        model_from_state_dict({**state, extra: torch.zeros(3)})

    reshaped = dict(state, **{victim: torch.zeros(shapes[victim][0], shapes[victim][1] + 1)})
    with pytest.raises(StateDictMismatchError, match=f"mis-shaped {victim}"):
        model_from_state_dict(reshaped)


def test_loading_a_checkpoint_does_not_import_the_symbolic_shape_machinery() -> None:
    """The shape check builds the network on the meta device; an op there that PyTorch decomposes imports
    sympy and Dynamo (over a second at every start of ``swinir`` and of each worker process)."""
    code = (
        "import sys; from swinir_cli.checkpoint import load_model; "
        f"load_model({str(REFERENCE / 'tiny' / 'real_nearestconv_x2.pth')!r}); "
        "print(sorted({'sympy', 'torch._dynamo'} & set(sys.modules)))"
    )
    done = run_python(code)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr[-2000:]


def test_authors_file_prefers_params_ema(tmp_path: Path) -> None:
    checkpoint = torch.load(REFERENCE / "tiny" / "real_nearestconv_x2.pth", weights_only=True)
    assert set(checkpoint) == {"params", "params_ema"}
    state = read_state_dict(REFERENCE / "tiny" / "real_nearestconv_x2.pth")
    assert all(torch.equal(state[k], checkpoint["params_ema"][k]) for k in state)

    only_params = tmp_path / "params.pth"
    torch.save({"params": checkpoint["params"]}, only_params)
    assert torch.equal(
        read_state_dict(only_params)["conv_first.weight"], checkpoint["params"]["conv_first.weight"]
    )

    bare = tmp_path / "bare.pth"
    torch.save(checkpoint["params"], bare)
    assert set(read_state_dict(bare)) == set(checkpoint["params"])


def test_safetensors_and_pth_give_identical_outputs(tmp_path: Path) -> None:
    pth = REFERENCE / "tiny" / "sr_pixelshuffle_x3.pth"
    state = read_state_dict(pth)
    converted = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(converted))
    x = torch.rand(1, 3, 13, 11)
    with torch.inference_mode():
        assert torch.equal(load_model(pth)(x), load_model(converted)(x))


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"params": {"conv_first.weight": torch.zeros(1)}, "payload": _RunsCode(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"this is not a checkpoint at all", "not a PyTorch .pth or .safetensors checkpoint"),
    ],
)
def test_unreadable_files_get_a_clear_error(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=reason):
        read_state_dict(path)


def test_missing_file_and_corrupt_safetensors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such weights file"):
        read_state_dict(tmp_path / "absent.pth")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="safetensors"):
        read_state_dict(broken)


def test_a_non_swinir_state_dict_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(10, 4), "conv1.weight": torch.zeros(8, 3, 7, 7)}, path)
    with pytest.raises(CheckpointError, match="not a SwinIR checkpoint"):
        load_model(path)


def test_img_range_defaults_by_window_and_can_be_overridden() -> None:
    jpeg = read_state_dict(REFERENCE / "tiny" / "car_gray_w7.pth")
    assert detect_config(jpeg).img_range == 255.0
    assert detect_config(jpeg, img_range=1.0).img_range == 1.0
    sr = read_state_dict(REFERENCE / "tiny" / "sr_pixelshuffle_x2.pth")
    assert detect_config(sr).img_range == 1.0


@pytest.mark.parametrize("case", sorted(p.stem for p in (REFERENCE / "tiny").glob("*.json")))
def test_tiny_cases_detected(case: str) -> None:
    want = json.loads((REFERENCE / "tiny" / f"{case}.json").read_text())["config"]
    want.pop("img_size")
    got = asdict(detect_config(read_state_dict(REFERENCE / "tiny" / f"{case}.pth")))
    assert {**got, "depths": list(got["depths"]), "num_heads": list(got["num_heads"])} == want


# ------------------------------------------------------------------------------------------------
# Crafted checkpoints: shapes are validated before anything is sized from them

TINY_X2 = REFERENCE / "tiny" / "sr_pixelshuffle_x2.pth"
BIAS_TABLE = "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"


def crafted(tmp_path: Path, name: str, **changes: torch.Tensor) -> Path:
    """The tiny x2 checkpoint with some tensors replaced, saved as the authors save theirs."""
    state = read_state_dict(TINY_X2)
    state.update(changes)
    path = tmp_path / f"{name}.pth"
    torch.save({"params": state}, path)
    return path


@pytest.mark.parametrize(
    "name, changes, reason",
    [
        ("flat-conv", {"conv_first.weight": torch.zeros(24)}, "'conv_first.weight' has shape (24,)"),
        ("no-channels", {"conv_first.weight": torch.zeros(0, 3, 3, 3)}, "has shape (0, 3, 3, 3)"),
        ("flat-table", {BIAS_TABLE: torch.zeros(225)}, f"{BIAS_TABLE!r} has shape (225,)"),
        ("no-heads", {BIAS_TABLE: torch.zeros(225, 0)}, "has shape (225, 0)"),
        # 1 stored value posing as a (2*2**17 - 1)**2 x 3 table: a window of 2**17, a TiB of indices
        ("tib-table", {BIAS_TABLE: torch.zeros(1).expand((2**18 - 1) ** 2, 3)}, "stores only 1"),
        (
            "huge-window",
            {
                BIAS_TABLE: torch.zeros(399**2, 3),
                BIAS_TABLE.replace("layers.0", "layers.1"): torch.zeros(399**2, 3),
            },
            "window 200",
        ),
        ("wide-embedding", {"conv_first.weight": torch.zeros(100_000, 3, 1, 1)}, "refused before allocating"),
    ],
)
def test_crafted_checkpoints_are_refused_on_one_line_before_allocating(
    tmp_path: Path, name: str, changes: dict, reason: str
) -> None:
    path = crafted(tmp_path, name, **changes)
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_a_crafted_checkpoint_through_the_command_is_one_line_and_exit_1(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    path = crafted(tmp_path, "tib-table", **{BIAS_TABLE: torch.zeros(1).expand((2**18 - 1) ** 2, 3)})
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    result = run_swinir(
        "upscale", "--weights", path, tmp_path / "in.png", "-o", tmp_path / "out.png", text=True
    )
    assert result.returncode == 1, result.stderr
    assert "stores only 1" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()


# ------------------------------------------------------------------------------------------------
# Hostile files: what is not a checkpoint is named for what it is; nothing is allocated that the file
# does not hold; only plain finite weights pass


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("photo.png", PNG_BYTES, "a PNG image, not a PyTorch .pth or .safetensors checkpoint"),
        (
            "login.pth",
            b"\n<!doctype html><html><body>Log in</body></html>",
            "an HTML or XML page, not a PyTorch .pth or .safetensors checkpoint",
        ),
    ],
)
def test_an_image_or_a_web_page_as_weights_is_named_for_what_it_is(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(tmp_path / name)
    assert str(caught.value) == f"{tmp_path / name}: {reason}"
    assert "pickle" not in str(caught.value)


def test_a_web_page_served_as_a_model_is_named_for_what_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(tmp_path / "cache"))
    server = WeightServer()
    try:
        server.html_page = b"<!doctype html><html><body>Please log in to download this file.</body></html>"
        register(tmp_path, monkeypatch, f"{server.base_url}/{FILE_NAME}", sha256=None)
        with pytest.raises(DownloadError) as caught:
            verified_weights_path(get_model("tiny-x2"))
    finally:
        server.stop()
    assert "(an HTML or XML page, not a PyTorch .pth or .safetensors checkpoint)" in str(caught.value)


def test_a_safetensors_file_is_told_by_its_header_even_when_it_starts_like_a_pickle(tmp_path: Path) -> None:
    state = read_state_dict(TINY_X2)
    path = tmp_path / "weights.pth"  # a name that does not say safetensors
    for padding in range(512):  # the header's length (its first byte) grows with the metadata
        save_file(state, path, metadata={"padding": "x" * padding})
        if path.read_bytes()[0] == 0x80:  # a pickle's first byte
            break
    assert path.read_bytes()[0] == 0x80
    assert read_state_dict(path).keys() == state.keys()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: os.mkfifo(path), "is a FIFO, not a regular file"),
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.symlink_to("/dev/zero"), "is a character device, not a regular file"),
    ],
    ids=["fifo", "folder", "device"],
)
def test_a_fifo_folder_or_device_as_weights_says_what_it_is_without_waiting(
    tmp_path: Path, make, reason: str
) -> None:
    path = tmp_path / "weights.pth"
    make(path)
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)  # a FIFO is opened without waiting for a writer
    assert str(caught.value) == f"{path}: cannot read the weights ({reason})"


def test_weights_as_a_photo_or_a_fifo_through_the_command_are_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(PNG_BYTES)
    os.mkfifo(tmp_path / "fifo.pth")
    photo, fifo = run_many(
        [
            ["upscale", tmp_path / "photo.png", "-w", tmp_path / "photo.png", "-o", tmp_path / "out.png"],
            ["upscale", tmp_path / "photo.png", "-w", tmp_path / "fifo.pth", "-o", tmp_path / "out.png"],
        ]
    )
    assert photo.returncode == fifo.returncode == 1
    assert_one_clean_error_line(
        photo, "photo.png: a PNG image, not a PyTorch .pth or .safetensors checkpoint"
    )
    assert_one_clean_error_line(fifo, "fifo.pth: cannot read the weights (is a FIFO, not a regular file)")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        # 64 MiB of zeros deflated into a 64 KB file: inflating it is the bomb
        (lambda path: zip_bomb_checkpoint(path, 64 << 20), f"record {LARGEST_RECORD!r} is compressed"),
        (
            lambda path: checkpoint_claiming(path, "sr_pixelshuffle_x2/data/0", 2**31),
            "record 'sr_pixelshuffle_x2/data/0' claims 2147483648 bytes, more than the file",
        ),
        # each record fits in the file, but the first overlaps all the others
        (
            lambda path: checkpoint_claiming(path, "sr_pixelshuffle_x2/data.pkl", len(TINY_BYTES)),
            "its records claim",
        ),
    ],
    ids=["deflated", "oversized", "overlapping"],
)
def test_zip_records_that_would_allocate_more_than_the_file_are_refused_before_reading(
    tmp_path: Path, make, reason: str
) -> None:
    path = make(tmp_path / "crafted.pth")
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)
    assert "refused before reading" in str(caught.value) and "\n" not in str(caught.value)


def _on_meta(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: torch.empty_like(tensor, device="meta") for name, tensor in state.items()}


def _replaced(name: str, make: Callable[[], torch.Tensor]) -> Callable[[dict], dict]:
    return lambda state: {**state, name: make()}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # shapes without values: the size checks pass, building the network would allocate them
        (_on_meta, "is on the meta device"),
        (
            _replaced("conv_first.weight", lambda: torch.zeros(60, 3, 3, 3).to_sparse()),
            "is sparse (sparse_coo)",
        ),
        (
            _replaced("conv_first.weight", lambda: torch.zeros(60, 27).to_sparse_csr()),
            "is sparse (sparse_csr)",
        ),
        (
            _replaced(
                "conv_first.bias", lambda: torch.quantize_per_tensor(torch.zeros(60), 0.1, 0, torch.qint8)
            ),
            "is quantized (qint8)",
        ),
        (
            _replaced("conv_first.weight", lambda: torch.zeros(60, 3, 3, 3, dtype=torch.complex64)),
            "holds complex64 values",
        ),
        (
            _replaced("conv_first.weight", lambda: torch.zeros(60, 3, 3, 3, dtype=torch.int32)),
            "holds int32 values",
        ),
    ],
    ids=["meta", "sparse", "sparse-csr", "quantized", "complex", "integer"],
)
def test_only_dense_cpu_floating_point_tensors_are_weights(tmp_path: Path, change, reason: str) -> None:
    path = tmp_path / "odd.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # making sparse and quantized tensors warns
        torch.save({"params": change(read_state_dict(TINY_X2))}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading them must not
        with pytest.raises(CheckpointError) as caught:
            read_state_dict(path)
    assert str(caught.value).startswith(f"{path}: tensor ") and reason in str(caught.value)
    assert "only dense CPU floating-point tensors are weights" in str(caught.value)


def test_integer_position_indices_and_half_precision_weights_are_accepted(tmp_path: Path) -> None:
    state = read_state_dict(TINY_X2)
    assert any(
        name.endswith("relative_position_index") and not t.is_floating_point() for name, t in state.items()
    )
    path = tmp_path / "half.pth"
    torch.save(
        {"params": {name: t.half() if t.is_floating_point() else t for name, t in state.items()}}, path
    )
    assert read_state_dict(path).keys() == state.keys()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_weights_that_are_not_finite_are_refused_at_load(tmp_path: Path, value: float) -> None:
    state = read_state_dict(TINY_X2)
    weight = state["conv_last.weight"].clone()
    weight[0, 0, 0, 0] = value
    for path in (tmp_path / "broken.pth", tmp_path / "broken.safetensors"):
        if path.suffix == ".pth":
            torch.save({"params": {**state, "conv_last.weight": weight}}, path)
        else:
            save_file({**state, "conv_last.weight": weight}, path)
        with pytest.raises(CheckpointError) as caught:
            load_model(path)
        assert str(caught.value) == (
            f"{path}: tensor 'conv_last.weight' holds NaN or infinite values; refused, since every result "
            "would be black or wrong"
        )


def test_tensors_sharing_one_storage_count_its_values_once(tmp_path: Path) -> None:
    # a 1200-wide embedding needs about 24 million values; 400 names for one 65,536-value storage
    # (saved once) must not pass for 26 million
    shared = torch.zeros(2**16)
    views = {f"extra.{i}": shared for i in range(400)}
    path = crafted(tmp_path, "shared", **{"conv_first.weight": torch.zeros(1200, 3, 3, 3)}, **views)
    assert path.stat().st_size < 2 * len(TINY_BYTES)
    with pytest.raises(CheckpointError, match="refused before allocating"):
        load_model(path)
