"""The bundled network against the authors' reference outputs (../shared/reference/tiny)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import REFERENCE, TINY_CASES, require_shared

from swinir_cli.checkpoint import load_model
from swinir_cli.network import (
    FloatLayerNorm,
    SwinIR,
    SwinIRConfig,
    SwinTransformerBlock,
    WindowAttention,
    autocast_dtype,
    shift_window_mask,
)

require_shared()


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


#: One tiny checkpoint per kind of network: each upsampler, the 3conv real-SR layout, gray, window 7, x8.
VALID_REGION_CASES = [
    "sr_pixelshuffle_x2",
    "sr_pixelshuffle_x8",
    "sr_pixelshuffledirect_x3",
    "real_nearestconv_x4",
    "real_large_3conv_x4",
    "dn_gray",
    "car_color_w7",
]


@pytest.mark.parametrize("case", VALID_REGION_CASES)
@pytest.mark.parametrize("optimized", [True, False], ids=["fast", "authors_order"])
def test_a_valid_region_is_computed_as_that_region_alone(case: str, optimized: bool) -> None:
    """An image (2 x 3 windows) in the top-left of a larger canvas (4 x 5 windows) whose rest holds NaN:
    masked convs and shifted windows give the image's own result there, finite, in either order of
    operations."""
    model = load_model(REFERENCE / "tiny" / f"{case}.pth")
    model.optimized = optimized
    window, scale, channels = model.config.window_size, model.config.upscale, model.config.in_chans
    height, width = 2 * window, 3 * window
    x = torch.rand(2, channels, height, width, generator=torch.Generator().manual_seed(0))
    canvas = torch.full((2, channels, 4 * window, 5 * window), float("nan"))
    canvas[..., :height, :width] = x
    valid = torch.zeros(canvas.shape[2:], dtype=torch.bool)
    valid[:height, :width] = True
    with torch.inference_mode():
        alone = model(x)
        region = model(canvas, valid)[..., : height * scale, : width * scale]
    assert torch.isfinite(region).all()
    assert (region - alone).abs().max() < 1e-5


def test_a_valid_region_needs_window_multiples_and_the_input_s_shape() -> None:
    model = load_model(REFERENCE / "tiny" / "sr_pixelshuffle_x2.pth")
    with torch.inference_mode(), pytest.raises(ValueError, match="window multiples"):
        model(torch.rand(1, 3, 20, 24), torch.ones(20, 24, dtype=torch.bool))
    with torch.inference_mode(), pytest.raises(ValueError, match=r"region \(16, 16\)"):
        model(torch.rand(1, 3, 16, 24), torch.ones(16, 16, dtype=torch.bool))


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


def _attention_inputs(head_dim: int, images: int = 2) -> tuple[WindowAttention, torch.Tensor, torch.Tensor]:
    """A random 8x8-window attention with ``head_dim`` per head, the windows of ``images`` 16x16 images
    (4 windows each) and the shift mask of the 3 windows that need one (the first needs none)."""
    torch.manual_seed(head_dim)
    heads = 3
    attention = WindowAttention(heads * head_dim, window=8, num_heads=heads).eval()
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.normal_(0, 0.1)
    x = torch.randn(images * 4, 64, heads * head_dim)
    return attention, x, shift_window_mask(16, 16, window=8, shift=4)[1:]


@pytest.mark.parametrize("head_dim", [10, 30])
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "shifted"])
def test_padded_attention_equals_unpadded(
    head_dim: int, masked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zero-padding q/k/v to a multiple of 8 (done on CUDA for the fused kernels) changes no result."""
    attention, x, mask = _attention_inputs(head_dim)
    args = (mask, 1) if masked else ()
    sdpa = torch.nn.functional.scaled_dot_product_attention
    head_dims: list[int] = []

    def recording(q: torch.Tensor, *rest, **options) -> torch.Tensor:
        head_dims.append(q.shape[-1])
        return sdpa(q, *rest, **options)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    with torch.inference_mode():
        monkeypatch.setattr(WindowAttention, "pad_head_dim", False)
        plain = attention(x, *args)
        monkeypatch.setattr(WindowAttention, "pad_head_dim", True)
        padded = attention(x, *args)
        authors = attention(x, *args, optimized=False)
    calls = len(head_dims) // 2
    assert head_dims[:calls] == [head_dim] * calls
    assert all(dim % 8 == 0 and dim - head_dim < 8 for dim in head_dims[calls:])
    assert torch.allclose(padded, plain, rtol=1e-6, atol=1e-6)  # float summation order only
    assert torch.allclose(padded, authors, rtol=1e-5, atol=1e-5)


def test_padded_network_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole network with padded attention (head dim 10 in SwinIR-S) still gives the authors' output."""
    monkeypatch.setattr(WindowAttention, "pad_head_dim", True)
    model = load_model(REFERENCE / "swinir_s_x4_random.pth")
    data = np.load(REFERENCE / "swinir_s_x4_random.npz")
    padded_input = np.pad(data["image_u8"], ((0, 8 - data["image_u8"].shape[0] % 8),) * 2 + ((0, 0),))
    x = torch.from_numpy(padded_input).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        padded = model(x)
        monkeypatch.setattr(WindowAttention, "pad_head_dim", False)
        plain = model(x)
    assert torch.allclose(padded, plain, atol=1e-5, rtol=0)


def test_padding_is_only_on_cuda_by_default() -> None:
    assert WindowAttention.pad_head_dim is None  # the class default: decided per call by q.is_cuda


@pytest.mark.parametrize("pad", [False, True], ids=["unpadded", "padded"])
def test_bf16_attention_keeps_softmax_in_fp32(pad: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under bf16 autocast the attention equals the fp32 attention of the same bf16 inputs, rounded to bf16
    (at most one bf16 step); a softmax in bf16 is hundreds of steps off."""
    monkeypatch.setattr(WindowAttention, "pad_head_dim", pad)
    attention, _x, mask = _attention_inputs(30)
    q, k, v = (torch.randn(6, 3, 64, 30, dtype=torch.bfloat16) * 2 for _ in range(3))
    bias = attention.position_bias(torch.bfloat16)[None] + mask.repeat(2, 1, 1)[:, None].bfloat16()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = attention._attend(q, k, v, bias, optimized=True)
    reference = attention._attend(q.float(), k.float(), v.float(), bias.float(), optimized=True)
    step = reference.abs().clamp_min(2**-6) * 2**-8  # one bf16 step (8 significant bits)
    assert got.dtype == torch.bfloat16
    assert ((got.float() - reference).abs() / step).max() <= 1.01
    in_bf16 = ((q * attention.scale) @ k.transpose(-2, -1) + bias).softmax(-1) @ v
    assert ((in_bf16.float() - reference).abs() / step).max() > 10


def test_bf16_autocast_keeps_layer_norm_and_residual_stream_in_fp32() -> None:
    """CPU autocast would give bf16 LayerNorm statistics and outputs; the network's LayerNorms stay fp32."""
    norm = FloatLayerNorm(60)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = (torch.randn(2, 16, 60) * 3 + 1).bfloat16()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = norm(x)
        plain = torch.nn.LayerNorm(60).to(torch.float32)(x)
    assert plain.dtype == torch.bfloat16  # what autocast alone does on the CPU
    assert got.dtype == torch.float32
    with torch.inference_mode():
        assert torch.allclose(got, norm(x.float()), atol=1e-6)

    model = load_model(REFERENCE / "tiny" / "sr_pixelshuffle_x2.pth")
    dtypes: list[torch.dtype] = []
    for block in model.modules():
        if isinstance(block, SwinTransformerBlock):
            block.register_forward_hook(lambda _module, _args, out: dtypes.append(out.dtype))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.rand(1, 3, 16, 16))
    assert dtypes and set(dtypes) == {torch.float32}


def test_bias_and_masks_are_cached_on_the_device_in_the_compute_dtype() -> None:
    model = load_model(REFERENCE / "tiny" / "sr_pixelshuffle_x2.pth")
    attention = next(m for m in model.modules() if isinstance(m, WindowAttention))
    cpu = torch.device("cpu")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        layout = model._windows.get(16, 16, 8, 4, cpu)
        assert layout.mask is not None and layout.mask.dtype == torch.bfloat16
        assert model._windows.get(16, 16, 8, 4, cpu) is layout  # once per tile shape
        bias = attention.position_bias(torch.bfloat16)
        assert bias.dtype == torch.bfloat16 and attention.position_bias(torch.bfloat16) is bias
    with torch.inference_mode():
        assert model._windows.get(16, 16, 8, 4, cpu).mask.dtype == torch.float32
        assert attention.position_bias(torch.float32).dtype == torch.float32


def test_autocast_dtype_follows_autocast_per_device() -> None:
    assert autocast_dtype("cpu") is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_dtype("cpu") == torch.bfloat16
        assert autocast_dtype("cuda") is None
