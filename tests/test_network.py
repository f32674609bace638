"""The bundled network against the authors' reference outputs (../shared/reference/tiny)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REFERENCE, TINY_CASES

from swinir_cli.checkpoint import load_model
from swinir_cli.network import SwinIR, SwinIRConfig, shift_window_mask


@pytest.mark.parametrize("case", TINY_CASES)
@pytest.mark.parametrize("inputs", ["window_multiple", "odd"])
def test_outputs_match_reference(case: str, inputs: str) -> None:
    model = load_model(REFERENCE / "tiny" / f"{case}.pth")
    data = np.load(REFERENCE / "tiny" / f"{case}.npz")
    with torch.inference_mode():
        got = model(torch.from_numpy(data[f"x_{inputs}"])).numpy()
    want = data[f"y_{inputs}"]
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("case", ["sr_pixelshuffle_x2", "real_large_3conv_x4", "car_color_w7"])
def test_fast_path_equals_authors_computation(case: str) -> None:
    """Cached bias/masks and fused attention give the same numbers as the authors' order of operations."""
    model = load_model(REFERENCE / "tiny" / f"{case}.pth")
    x = torch.from_numpy(np.load(REFERENCE / "tiny" / f"{case}.npz")["x_odd"])
    with torch.inference_mode():
        fast = model(x)
        model.optimized = False
        reference = model(x)
    assert torch.allclose(fast, reference, atol=1e-5)


def test_caches_follow_new_weights_and_sizes() -> None:
    """A cached bias must not outlive a weight update, and each input size gets its own mask."""
    config = json.loads((REFERENCE / "tiny" / "sr_pixelshuffle_x2.json").read_text())["config"]
    config.pop("img_size")
    model = SwinIR(SwinIRConfig(**config)).eval()
    x = torch.rand(1, 3, 16, 24)
    with torch.inference_mode():
        before = model(x)
        table = model.layers[0].residual_group.blocks[1].attn.relative_position_bias_table
        table.add_(torch.randn_like(table))
        after = model(x)
        assert not torch.allclose(before, after)
        model.optimized = False
        assert torch.allclose(after, model(x), atol=1e-5)
        model.optimized = True
        assert model(torch.rand(1, 3, 24, 16)).shape == (1, 3, 48, 32)


def test_batch_of_images_equals_one_by_one() -> None:
    model = load_model(REFERENCE / "tiny" / "real_nearestconv_x2.pth")
    x = torch.rand(3, 3, 16, 16)
    with torch.inference_mode():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_shift_mask_separates_wrapped_regions() -> None:
    mask = shift_window_mask(16, 16, window=8, shift=4)
    assert mask.shape == (4, 64, 64)
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    assert set(mask[3].unique().tolist()) == {-100.0, 0.0}


@pytest.mark.parametrize(
    "bad",
    [
        {"upsampler": "bilinear"},
        {"resi_connection": "2conv"},
        {"depths": (2, 2), "num_heads": (3,)},
        {"embed_dim": 25, "num_heads": (3,), "depths": (2,)},
        {"upsampler": "nearest+conv", "upscale": 3},
        {"upsampler": "", "upscale": 2},
    ],
)
def test_config_rejects_impossible_networks(bad: dict) -> None:
    with pytest.raises(ValueError):
        SwinIRConfig(**bad)
