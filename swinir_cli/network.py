"""The SwinIR network (Liang et al., 2021), written for inference.

Tensor names match the authors' ``models/network_swinir.py``, so their checkpoints load without renaming.
Training machinery (dropout, drop-path, gradient checkpointing, absolute position embedding) is left
out; the released models use none of it at test time.

The relative position bias of each attention layer and the shifted-window mask of each input size are
computed once per compute dtype and device and cached, and attention runs through
``scaled_dot_product_attention`` (on CUDA with the head dimension zero-padded to a multiple of 8, which
its fused kernels need; see :class:`WindowAttention`). Setting
``SwinIR.optimized = False`` restores the authors' computation order (bias and mask rebuilt on every call,
explicit softmax), which the benchmark uses as its baseline.

This module imports nothing from the rest of swinir-cli.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UPSAMPLERS", "SwinIR", "SwinIRConfig"]

UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")

#: The authors' mean of DIV2K in RGB order, subtracted before the network for 3-channel models.
RGB_MEAN = (0.4488, 0.4371, 0.4040)
#: Additive mask value between tokens of different regions in a shifted window (the authors' value).
SHIFT_MASK_VALUE = -100.0
#: Feature channels of the reconstruction heads of classical and real-world SR.
HEAD_FEATURES = 64
#: Head dimension multiple that CUDA's fused attention kernels (flash, memory-efficient) need with a float
#: mask; SwinIR's head dimensions are 30 (M, L) and 10 (S).
FUSED_HEAD_DIM_MULTIPLE = 8


@dataclass(frozen=True)
class SwinIRConfig:
    """Hyper-parameters of one SwinIR network.

    ``upscale`` is 1 for denoising/JPEG models (``upsampler == ""``); ``img_range`` is the factor applied to
    the input after the mean shift: 1.0 for every released model except the JPEG ones (255.0).
    """

    in_chans: int = 3
    embed_dim: int = 180
    depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    window_size: int = 8
    mlp_ratio: float = 2.0
    upscale: int = 1
    upsampler: str = ""
    resi_connection: str = "1conv"
    img_range: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "num_heads", tuple(self.num_heads))
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler {self.upsampler!r} is not one of {UPSAMPLERS}")
        if self.resi_connection not in ("1conv", "3conv"):
            raise ValueError(f"resi_connection {self.resi_connection!r} is not '1conv' or '3conv'")
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} differ in length")
        if any(self.embed_dim % heads for heads in self.num_heads):
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.upsampler == "" and self.upscale != 1:
            raise ValueError(f"upscale {self.upscale} needs an upsampler")
        if self.upsampler == "nearest+conv" and self.upscale not in (2, 4):
            raise ValueError(f"upsampler 'nearest+conv' supports upscale 2 or 4, not {self.upscale}")
        if self.upsampler == "pixelshuffle" and not _is_pixelshuffle_scale(self.upscale):
            raise ValueError(f"upsampler 'pixelshuffle' supports upscale 2^n or 3, not {self.upscale}")

    @property
    def upsample_features(self) -> int:
        """Channels of the features the head upsamples (0 without upsampling), for memory estimates."""
        if self.upsampler in ("pixelshuffle", "nearest+conv"):
            return HEAD_FEATURES
        return self.in_chans if self.upsampler == "pixelshuffledirect" else 0


def _is_pixelshuffle_scale(scale: int) -> bool:
    return scale == 3 or (scale >= 2 and scale & (scale - 1) == 0)


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/window * W/window, window * window, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window: int) -> torch.Tensor:
    """(window², window²) indices into a ((2·window - 1)², heads) bias table, as the authors build it."""
    # on the CPU even under torch.device("meta"), where arange's decomposition imports sympy (~1 s)
    axis = torch.arange(window, device="cpu")
    coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]


def shift_window_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """(nW, window², window²) additive mask: 0 within a region, -100 across the regions a roll wrapped.

    ``h`` and ``w`` are multiples of ``window``.
    """
    region = torch.zeros(h, w)
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    for i, (h0, h1) in enumerate(bounds):
        for j, (w0, w1) in enumerate(bounds):
            region[h0:h1, w0:w1] = i * 3 + j
    ids = window_partition(region.view(1, h, w, 1), window).squeeze(-1)
    differs = ids.unsqueeze(1) != ids.unsqueeze(2)
    return torch.zeros(differs.shape).masked_fill_(differs, SHIFT_MASK_VALUE)


class FloatLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` whose statistics and output are float32 under autocast, on every device.

    CUDA's autocast already runs layer_norm in float32, but the CPU's keeps bf16 (statistics, output, and
    with it the residual stream). Outside autocast it is plain ``nn.LayerNorm``. Same parameters, so
    checkpoints load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if autocast_dtype(x.device.type) is None:
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


#: oneDNN's linear with the bias (and GELU) fused into the matrix product: 0.4-0.67x the time of
#: ``nn.Linear`` for SwinIR's shapes on an AVX-512 CPU, which adds the bias in a separate broadcast copy.
_FUSED_LINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def linear(layer: nn.Linear, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """``layer(x)`` (then exact GELU if ``gelu``), x: (..., in_features) -> (..., out_features).

    fp32 CPU inference without autocast runs oneDNN's fused kernel on the 2-D view of ``x``; everything
    else (other devices and dtypes, autocast, autograd, tracing for an export) takes the plain PyTorch path.
    """
    if (
        _FUSED_LINEAR
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and not (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))
        and not torch.jit.is_tracing()  # exporters (OpenVINO's, ONNX) know aten::linear, not oneDNN's op
        and not torch.compiler.is_compiling()
    ):
        flat = x.reshape(-1, x.shape[-1])
        out = torch.ops.mkldnn._linear_pointwise(
            flat, layer.weight, layer.bias, "gelu" if gelu else "none", [], "none"
        )
        return out.view(*x.shape[:-1], out.shape[-1])
    out = layer(x)
    return F.gelu(out) if gelu else out


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    ``pad_head_dim`` (a class attribute) says whether the fused path zero-pads q, k and v to a head
    dimension that is a multiple of :data:`FUSED_HEAD_DIM_MULTIPLE` before ``scaled_dot_product_attention``,
    with the scale of the real head dimension, and slices the output back: exact in arithmetic (the zero
    columns add nothing to q·k, and give output columns that are dropped). None (default): on CUDA only,
    where it lets the fused kernels run; True/False force it on or off (tests, ``benchmarks/gpu_check.py``).
    """

    pad_head_dim: bool | None = None

    def __init__(self, dim: int, window: int, num_heads: int) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self._bias_cache: tuple[tuple, torch.Tensor] | None = None

    def position_bias(self, dtype: torch.dtype | None = None, cached: bool = True) -> torch.Tensor:
        """(heads, N, N) bias added to the attention logits, N = window², in ``dtype`` (default: the
        table's), on the table's device. Cached per dtype; rebuilt when the table changes. Not cached while
        ``torch.compile`` traces it: the compiled graph computes it (the cache key would break the graph)."""
        table = self.relative_position_bias_table
        dtype = table.dtype if dtype is None else dtype
        key = None
        if cached and not torch.compiler.is_compiling():
            version = None if table.is_inference() else table._version  # in-place edits bump the version
            key = (table.device, dtype, table.data_ptr(), version)
            if self._bias_cache is not None and self._bias_cache[0] == key:
                return self._bias_cache[1]
        n = self.window * self.window
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        bias = bias.to(dtype).contiguous()
        if key is not None:
            self._bias_cache = (key, bias)
        return bias

    def clear_cache(self) -> None:
        self._bias_cache = None

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, unmasked: int = 0, optimized: bool = True
    ) -> torch.Tensor:
        """x: (B * nW, N, C), the windows of B images, in the same order for each image.

        ``mask`` (M, N, N) is added to the logits of the last M windows of each image; the first
        ``unmasked`` = nW - M windows have no mask (with the shifted-window layout, only the windows at the
        bottom and right edges need one). Returns (B * nW, N, C).
        """
        bw, n, c = x.shape
        heads, dim = self.num_heads, c // self.num_heads
        q, k, v = linear(self.qkv, x).reshape(bw, n, 3, heads, dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.position_bias(q.dtype, cached=optimized).unsqueeze(0)
        if mask is None:
            out = self._attend(q, k, v, bias, optimized).transpose(1, 2).reshape(bw, n, c)
        else:
            per_image = unmasked + mask.shape[0]
            images = bw // per_image
            masked_bias = mask.to(q.dtype).unsqueeze(1) + bias
            if images > 1:
                masked_bias = masked_bias.repeat(images, 1, 1, 1)
            q, k, v = (t.view(images, per_image, heads, n, dim) for t in (q, k, v))
            parts = [] if unmasked == 0 else [self._attend(*_windows(q, k, v, 0, unmasked), bias, optimized)]
            parts.append(self._attend(*_windows(q, k, v, unmasked, per_image), masked_bias, optimized))
            # heads move behind tokens in the same copy that joins the two groups of windows
            out = torch.cat([part.view(images, -1, heads, n, dim).transpose(2, 3) for part in parts], 1)
            out = out.view(bw, n, c)
        return linear(self.proj, out)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, optimized: bool
    ) -> torch.Tensor:
        if not optimized:
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias
            return attn.softmax(dim=-1) @ v
        dim = q.shape[-1]
        pad = -dim % FUSED_HEAD_DIM_MULTIPLE
        if pad == 0 or not (q.is_cuda if self.pad_head_dim is None else self.pad_head_dim):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)[..., :dim]


def _windows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, stop: int) -> list[torch.Tensor]:
    """Windows start..stop of every image from (B, nW, heads, N, dim) views, as (B * n, heads, N, dim)."""
    return [t[:, start:stop].reshape(-1, *t.shape[2:]) for t in (q, k, v)]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(self.fc2, linear(self.fc1, x, gelu=True))


class SwinTransformerBlock(nn.Module):
    """LayerNorm → (shifted) window attention → residual; LayerNorm → MLP → residual."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = FloatLayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = FloatLayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, grid: _Grid) -> torch.Tensor:
        """x: (B, H*W, C) tokens of an image of ``grid.size`` = (H, W), both multiples of the window,
        computed for ``grid.valid`` alone where it is given (see :func:`padding_window_mask`)."""
        (h, w), windows, valid, padding_mask = grid
        b, _, c = x.shape
        y = self.norm1(x)
        if windows.enabled:  # one cached gather replaces roll + partition (and reverse + roll)
            layout = windows.get(h, w, self.window, self.shift, x.device)
            y = y.index_select(1, layout.order).view(-1, self.window**2, c)
            if padding_mask is None or not self.shift:
                y = self.attn(y, layout.mask, layout.unmasked)
            else:  # every window masked: the layout's shift mask and the padding's keys
                y = self.attn(y, padding_mask, 0)
            y = y.view(b, h * w, c).index_select(1, layout.inverse)
        else:  # the authors' order of operations, mask rebuilt on the CPU in every block
            y = y.view(b, h, w, c)
            mask = None
            if self.shift:
                y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
                mask = shift_window_mask(h, w, self.window, self.shift).to(x.device)
                if valid is not None:
                    rolled = torch.roll(valid, shifts=(-self.shift, -self.shift), dims=(0, 1))
                    keys = window_partition(rolled.view(1, h, w, 1), self.window).squeeze(-1)
                    mask = mask + _key_mask(keys, mask.dtype)
            y = window_reverse(
                self.attn(window_partition(y, self.window), mask, optimized=False), self.window, h, w
            )
            if self.shift:
                y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
            y = y.reshape(b, h * w, c)
        x = x + y
        return x + self.mlp(self.norm2(x))


@dataclass(frozen=True)
class _WindowLayout:
    """How one image's tokens are grouped into (shifted) windows.

    ``order`` lists token indices window by window (``inverse`` undoes it), with the windows that need no
    shift mask first: ``unmasked`` of them, then those of ``mask`` (M, N, N), which is None without a shift.
    """

    order: torch.Tensor
    inverse: torch.Tensor
    unmasked: int
    mask: torch.Tensor | None


class _WindowCache:
    """Window layouts by (size, window, shift, device, compute dtype), shared by every block of a network.

    The compute dtype is autocast's on that device when autocast is on there, else float32: each tile
    shape's shift mask is uploaded and converted once, not in every block.

    ``enabled = False`` switches the network to the authors' order of operations (no caches, explicit
    softmax attention), the baseline of the speed benchmark.
    """

    def __init__(self) -> None:
        self.enabled = True
        self._layouts: dict[tuple, _WindowLayout] = {}

    def clear(self) -> None:
        self._layouts.clear()

    def get(self, h: int, w: int, window: int, shift: int, device: torch.device) -> _WindowLayout:
        dtype = compute_dtype(device)
        key = (int(h), int(w), window, shift, device, dtype)  # sizes are 0-dim tensors while tracing
        if key not in self._layouts:
            if len(self._layouts) >= 16:  # tiles come in a handful of shapes; whole images in one
                self.clear()
            self._layouts[key] = _window_layout(h, w, window, shift, device, dtype)
        return self._layouts[key]


class _Grid(NamedTuple):
    """Where the body's tokens lie: the (H, W) image they form, the network's window layouts, the region
    computed for (``valid`` of :meth:`SwinIR.forward`; None: the whole image), and with it, where the
    layouts are enabled, the :func:`padding_window_mask` of the shifted layout (one for every shifted block).
    """

    size: tuple[int, int]
    windows: _WindowCache
    valid: torch.Tensor | None = None
    padding_mask: torch.Tensor | None = None


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype matmuls run in on ``device`` now: autocast's when it is enabled there, else float32."""
    return autocast_dtype(device.type) or torch.float32


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on ``device_type`` ("cpu", "cuda", ...), None when it is off there."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4: one query for every device type
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    if device_type == "cuda":
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    return None


def _window_layout(
    h: int, w: int, window: int, shift: int, device: torch.device, dtype: torch.dtype
) -> _WindowLayout:
    tokens = torch.arange(h * w).view(1, h, w, 1)
    if shift:
        tokens = torch.roll(tokens, shifts=(-shift, -shift), dims=(1, 2))
    windows = window_partition(tokens, window).squeeze(-1)  # (nW, N) token indices
    mask = None
    unmasked = windows.shape[0]
    if shift:
        full_mask = shift_window_mask(h, w, window, shift)
        needs_mask = full_mask.ne(0).flatten(1).any(1)
        windows = torch.cat([windows[~needs_mask], windows[needs_mask]])
        mask = full_mask[needs_mask].to(device, dtype)
        unmasked = int((~needs_mask).sum())
    order = windows.reshape(-1)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(h * w)
    return _WindowLayout(order.to(device), inverse.to(device), unmasked, mask)


def padding_window_mask(layout: _WindowLayout, valid: torch.Tensor) -> torch.Tensor:
    """(nW, N, N) additive mask for every window of a shifted ``layout`` of an H x W canvas whose ``valid``
    (H, W) bool region, its top-left H' x W' (window multiples), is the image the result is wanted for: the
    layout's shift mask (zero for its first ``unmasked`` windows) plus :data:`SHIFT_MASK_VALUE` on every key
    outside ``valid``, in the layout mask's dtype. Gathered in the graph through ``layout.order``, so a
    compiled network has one graph per canvas shape, whatever region is valid.

    Why the valid queries then attend exactly as in the authors' shifted windows of the H' x W' image
    (window M, shift s; rows here, columns alike, and a window's groups are products of a row group and a
    column group): the authors roll the H' rows by -s, so their windows hold the rows [kM + s, (k+1)M + s)
    for k < H'/M - 1, and their last one joins [H' - M + s, H') with the wrapped rows [0, s), two groups their
    mask keeps apart. The canvas (H >= H' + M, or H = H' where nothing changes) rolls its H rows: its first
    H'/M - 1 windows are the same; the next holds [H' - M + s, H') with padding rows [H', H' + s), and its
    last window joins the padding rows [H - M + s, H) with the wrapped [0, s), apart by the canvas' own mask.
    Masking the padding keys leaves every valid query the valid keys of its authors' group, each with the
    same logit. What differs is what both add -100 to (the authors' other group, the padding keys): terms of
    relative weight e^-100 for logits of the usual size. The value -100 (not -inf) also keeps the all-padding
    windows' softmax finite; their queries are junk, which the caller crops away.
    """
    windows, n = layout.order.numel() // layout.mask.shape[-1], layout.mask.shape[-1]
    keys = valid.reshape(-1).index_select(0, layout.order).view(windows, n)
    shifted = torch.cat([layout.mask.new_zeros(layout.unmasked, n, n), layout.mask])
    return shifted + _key_mask(keys, layout.mask.dtype)


def _key_mask(keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(nW, 1, N) additive mask from (nW, N) bool: 0 on a valid key, :data:`SHIFT_MASK_VALUE` elsewhere."""
    return torch.where(keys, 0.0, SHIFT_MASK_VALUE).to(dtype).unsqueeze(1)


def masked_convs(module: nn.Module, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``module(x)`` for a conv or a ``Sequential`` of convs, activations and PixelShuffles; with ``valid``
    (H, W) bool, x is set to 0 outside it before every conv wider than 1x1, as the authors' convs see their
    zero padding around the valid region alone (``torch.where``: values outside may be anything, inf
    included), and ``valid`` grows with each PixelShuffle. None: plain ``module(x)``."""
    if valid is None:
        return module(x)
    for layer in module if isinstance(module, nn.Sequential) else (module,):
        if isinstance(layer, nn.PixelShuffle):
            valid = upscaled_valid(valid, layer.upscale_factor)
        elif isinstance(layer, nn.Conv2d) and layer.kernel_size != (1, 1):
            x = torch.where(valid, x, 0)
        x = layer(x)
    return x


def upscaled_valid(valid: torch.Tensor | None, factor: int) -> torch.Tensor | None:
    """The region that a PixelShuffle or nearest upsampling by ``factor`` makes of ``valid`` (None: None)."""
    if valid is None or factor == 1:
        return valid
    return valid.repeat_interleave(factor, 0).repeat_interleave(factor, 1)


def _conv_block(dim: int, kind: str) -> nn.Module:
    """The convolution closing a residual group and the trunk: one 3x3, or 3x3 → 1x1 → 3x3 at dim/4."""
    if kind == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    quarter = dim // 4
    return nn.Sequential(
        nn.Conv2d(dim, quarter, 3, 1, 1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(quarter, quarter, 1, 1, 0),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(quarter, dim, 3, 1, 1),
    )


class ResidualGroup(nn.Module):
    """The authors' ``BasicLayer``: Swin blocks alternating plain and shifted windows."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, grid: _Grid) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, grid)
        return x


class RSTB(nn.Module):
    """Residual Swin Transformer block: a residual group, a conv on the image-shaped features, a skip."""

    def __init__(self, config: SwinIRConfig, num_heads: int, depth: int) -> None:
        super().__init__()
        dim = config.embed_dim
        self.residual_group = ResidualGroup(dim, depth, num_heads, config.window_size, config.mlp_ratio)
        self.conv = _conv_block(dim, config.resi_connection)

    def forward(self, x: torch.Tensor, grid: _Grid) -> torch.Tensor:
        """x: (B, H*W, C) contiguous tokens -> the same; the conv sees them as channels-last (B, C, H, W)."""
        b, _, c = x.shape
        y = self.residual_group(x, grid)
        y = masked_convs(self.conv, y.transpose(1, 2).view(b, c, *grid.size), grid.valid)
        return x + y.flatten(2).transpose(1, 2)


class _PatchEmbedNorm(nn.Module):
    """Holds the LayerNorm applied to the flattened shallow features (``patch_embed.norm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = FloatLayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


def _pixelshuffle_head(scale: int, features: int) -> nn.Sequential:
    """Conv + PixelShuffle(2) per factor of 2, or one conv + PixelShuffle(3)."""
    layers: list[nn.Module] = []
    factors = [3] if scale == 3 else [2] * int(math.log2(scale))
    for f in factors:
        layers += [nn.Conv2d(features, f * f * features, 3, 1, 1), nn.PixelShuffle(f)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


class SwinIR(nn.Module):
    """SwinIR for super-resolution (x2/x3/x4/x8), denoising and JPEG artifact removal.

    ``forward`` takes (B, in_chans, H, W) images with values in [0, 1] (any H, W: the input is
    reflect-padded to a multiple of the window and the output cropped back) and returns
    (B, in_chans, H * upscale, W * upscale), unclamped.
    """

    def __init__(self, config: SwinIRConfig) -> None:
        super().__init__()
        self.config = config
        dim, chans = config.embed_dim, config.in_chans
        mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1) if chans == 3 else torch.zeros(1, 1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self._windows = _WindowCache()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.clear_caches())

        self.conv_first = nn.Conv2d(chans, dim, 3, 1, 1)
        self.patch_embed = _PatchEmbedNorm(dim)
        self.layers = nn.ModuleList(
            RSTB(config, heads, depth) for depth, heads in zip(config.depths, config.num_heads, strict=True)
        )
        self.norm = FloatLayerNorm(dim)
        self.conv_after_body = _conv_block(dim, config.resi_connection)

        up = config.upsampler
        if up in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(dim, HEAD_FEATURES, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
        if up == "pixelshuffle":
            self.upsample = _pixelshuffle_head(config.upscale, HEAD_FEATURES)
            self.conv_last = nn.Conv2d(HEAD_FEATURES, chans, 3, 1, 1)
        elif up == "pixelshuffledirect":
            self.upsample = nn.Sequential(
                nn.Conv2d(dim, config.upscale**2 * chans, 3, 1, 1), nn.PixelShuffle(config.upscale)
            )
        elif up == "nearest+conv":
            self.conv_up1 = nn.Conv2d(HEAD_FEATURES, HEAD_FEATURES, 3, 1, 1)
            if config.upscale == 4:
                self.conv_up2 = nn.Conv2d(HEAD_FEATURES, HEAD_FEATURES, 3, 1, 1)
            self.conv_hr = nn.Conv2d(HEAD_FEATURES, HEAD_FEATURES, 3, 1, 1)
            self.conv_last = nn.Conv2d(HEAD_FEATURES, chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        else:
            self.conv_last = nn.Conv2d(dim, chans, 3, 1, 1)
        # Channels-last convolutions return channels-last features, whose flattened form is the contiguous
        # (B, H*W, C) token stream: one layout through the whole body, no transposed copy after each RSTB.
        self.to(memory_format=torch.channels_last)

    @property
    def optimized(self) -> bool:
        """Cached bias/masks and fused attention (True, default) or the authors' computation order."""
        return self._windows.enabled

    @optimized.setter
    def optimized(self, value: bool) -> None:
        self._windows.enabled = value

    def clear_caches(self) -> None:
        """Forget cached position biases and window masks (done automatically on ``load_state_dict``)."""
        self._windows.clear()
        for module in self.modules():
            if isinstance(module, WindowAttention):
                module.clear_cache()

    def cache_window_layouts(self, height: int, width: int, device: torch.device) -> None:
        """Have the window layouts (plain and shifted) of a ``height`` x ``width`` input on ``device`` cached
        for the compute dtype in effect (autocast's), the sides rounded up to the window as ``forward``
        pads them. ``torch.compile`` reads cached layouts into one graph; building one inside a traced
        forward would split the graph (its mask count is data)."""
        window = self.config.window_size
        for shift in (0, window // 2):
            self._windows.get(
                -(-height // window) * window, -(-width // window) * window, window, shift, device
            )

    def forward_features(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Deep features of shallow features x: (B, C, H, W) -> (B, C, H, W), H and W window multiples;
        ``valid``: see :meth:`forward`."""
        b, c, h, w = x.shape
        tokens = self.patch_embed(x)
        grid = _Grid((h, w), self._windows, valid)
        if valid is not None and self.optimized:
            window = self.config.window_size
            shifted = self._windows.get(h, w, window, window // 2, x.device)
            grid = grid._replace(padding_mask=padding_window_mask(shifted, valid))
        for layer in self.layers:
            tokens = layer(tokens, grid)
        return self.norm(tokens).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, in_chans, H * upscale, W * upscale), see the class.

        ``valid``, an (H, W) bool tensor on x's device that is True on a top-left H' x W' region (H, W, H'
        and W' window multiples), computes the result of that region alone as if x were cropped to it
        (within float rounding: see :func:`padding_window_mask`), in the result's region scaled by
        ``upscale``; the rest of the result is junk. Each conv sees the features outside the region as
        zeros (:func:`masked_convs`), each shifted window's attention masks the keys outside it, and the
        input outside it may hold anything. Being a tensor, not a size, it leaves a compiled graph one
        per input shape. None: the whole input, as the authors compute it.

        Raises:
            ValueError: ``valid`` is given for an input whose sides are not window multiples, or has not
                its shape.
        """
        h, w = x.shape[2:]
        window = self.config.window_size
        if valid is not None and (h % window or w % window or tuple(valid.shape) != (h, w)):
            raise ValueError(
                f"a valid region needs an input of window multiples ({window}) and its own (H, W) shape; "
                f"got input {h}x{w}, region {tuple(valid.shape)}"
            )
        x = F.pad(x, (0, -w % window, 0, -h % window), mode="reflect")
        x = (x - self.mean.to(x.dtype)) * self.config.img_range

        features = masked_convs(self.conv_first, x, valid)
        body = masked_convs(self.conv_after_body, self.forward_features(features, valid), valid) + features
        up, scaled = self.config.upsampler, upscaled_valid(valid, self.config.upscale)
        if up == "pixelshuffle":
            x = masked_convs(self.upsample, masked_convs(self.conv_before_upsample, body, valid), valid)
            x = masked_convs(self.conv_last, x, scaled)
        elif up == "pixelshuffledirect":
            x = masked_convs(self.upsample, body, valid)
        elif up == "nearest+conv":
            x = masked_convs(self.conv_before_upsample, body, valid)
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.lrelu(masked_convs(self.conv_up1, x, upscaled_valid(valid, 2)))
            if self.config.upscale == 4:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                x = self.lrelu(masked_convs(self.conv_up2, x, scaled))
            x = masked_convs(self.conv_last, self.lrelu(masked_convs(self.conv_hr, x, scaled)), scaled)
        else:
            x = x + masked_convs(self.conv_last, body, valid)

        x = x / self.config.img_range + self.mean.to(x.dtype)
        s = self.config.upscale
        return x[:, :, : h * s, : w * s]
