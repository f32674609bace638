"""Safe checkpoint reading, architecture detection and strict loading for all 31 released layouts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE, official_models, random_state_dict
from safetensors.torch import save_file

from swinir_cli.checkpoint import detect_config, load_model, model_from_state_dict, read_state_dict
from swinir_cli.errors import CheckpointError, StateDictMismatchError

OFFICIAL = official_models()
ROW_IDS = [row["file"].removesuffix(".pth") for row in OFFICIAL]


def learnable(shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    return {k: v for k, v in shapes.items() if not k.endswith(("attn_mask", "relative_position_index"))}


@pytest.mark.parametrize("row", OFFICIAL, ids=ROW_IDS)
def test_detection_returns_the_authors_config(row: dict) -> None:
    state = {name: torch.empty(shape) for name, shape in row["state_dict"].items()}
    config = asdict(detect_config(state))
    want = {k: v for k, v in row["config"].items() if k != "img_size"}
    assert {**config, "depths": list(config["depths"]), "num_heads": list(config["num_heads"])} == want


@pytest.mark.parametrize("row", OFFICIAL, ids=ROW_IDS)
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
        (b"this is not a checkpoint at all", "not a PyTorch checkpoint"),
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
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    path = crafted(tmp_path, "tib-table", **{BIAS_TABLE: torch.zeros(1).expand((2**18 - 1) ** 2, 3)})
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    swinir = Path(sys.executable).with_name("swinir")
    result = subprocess.run(
        [
            str(swinir),
            "upscale",
            "--weights",
            str(path),
            str(tmp_path / "in.png"),
            "-o",
            str(tmp_path / "out.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "stores only 1" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()
