"""SwinIR-M's window attention on one GPU: SDPA's cuDNN and memory-efficient kernels against FlexAttention.

The attention of one padded SwinIR-M input (``--side``, default 264: 1089 windows of 8x8 tokens, 6 heads,
head dimension 30 zero-padded to 32 as the network pads it on CUDA, the scale of 30), both layers of a
block: ``plain`` (every window with the relative position bias) and ``shifted`` (the windows at the bottom
and right edges also with the shift mask). Each way of computing it:

- ``sdpa-cudnn``, ``sdpa-efficient``, ``sdpa-math``: ``scaled_dot_product_attention`` restricted to one
  backend (``torch.nn.attention.sdpa_kernel``), bias and mask as the additive float mask the network
  passes (shifted: two calls, the unmasked windows with the bias alone, as the network does);
- ``flex``: ``flex_attention`` compiled, one call over all windows, the bias and the shift mask added by a
  ``score_mod``;

per precision (fp16, bf16, fp32): median ms per call (synchronised), the first call's seconds (compiling,
for flex) and the largest absolute deviation from fp32 math. A backend that refuses the inputs gives its
error. Writes ``attention_kernels.json`` under ``--out`` and prints a table. On a lent GPU:

    PYTHONPATH=. python3 benchmarks/attention_kernels.py --out $OUT

``--dry-run``: the CPU, 16 windows, fp32, ``sdpa-math`` and eager (uncompiled) ``flex``: the code paths,
no figures that mean anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from swinir_cli.network import WindowAttention, shift_window_mask

HEADS, HEAD_DIM, PADDED_DIM, WINDOW = 6, 30, 32, 8
PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def inputs(side: int, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """q, k, v (windows, heads, 64, 32: zero beyond 30), the bias (heads, 64, 64) and the shift mask
    (windows, 64, 64: zero for windows that need none) of a ``side`` x ``side`` input."""
    torch.manual_seed(0)
    attention = WindowAttention(HEADS * HEAD_DIM, WINDOW, HEADS)
    with torch.no_grad():
        attention.relative_position_bias_table.normal_(0, 0.5)
    windows, n = (side // WINDOW) ** 2, WINDOW * WINDOW
    q, k, v = (F.pad(torch.randn(windows, HEADS, n, HEAD_DIM), (0, PADDED_DIM - HEAD_DIM)) for _ in "qkv")
    tensors = {
        "q": q,
        "k": k,
        "v": v,
        "bias": attention.position_bias().detach(),
        "mask": shift_window_mask(side, side, WINDOW, WINDOW // 2),
    }
    return {name: t.to(device, dtype) for name, t in tensors.items()}


def sdpa(backend: object | None) -> Callable[[dict, bool], torch.Tensor]:
    """The network's way: SDPA with the bias (and mask) as a float mask; shifted, the windows without a
    mask in one call and those with one in another."""
    from torch.nn.attention import sdpa_kernel

    def attend(t: dict, shifted: bool) -> torch.Tensor:
        scale = HEAD_DIM**-0.5
        restricted = sdpa_kernel(backend) if backend is not None else contextlib.nullcontext()
        bias = t["bias"][None]
        with restricted:
            if not shifted:
                return F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=bias, scale=scale)
            needs = t["mask"].ne(0).flatten(1).any(1)
            parts = []
            for windows, mask in ((~needs, bias), (needs, t["mask"][needs][:, None] + bias)):
                q, k, v = (t[name][windows] for name in "qkv")
                parts.append(F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale))
            out = torch.empty_like(t["q"])
            out[~needs], out[needs] = parts
            return out

    return attend


def flex(compiled: bool) -> Callable[[dict, bool], torch.Tensor]:
    """FlexAttention over every window at once, bias and shift mask added in a ``score_mod``."""
    from torch.nn.attention.flex_attention import flex_attention

    run = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention

    def attend(t: dict, shifted: bool) -> torch.Tensor:
        bias, mask = t["bias"], t["mask"]

        def with_bias(score, window, head, query, key):
            return score + bias[head, query, key]

        def with_bias_and_mask(score, window, head, query, key):
            return score + bias[head, query, key] + mask[window, query, key]

        score_mod = with_bias_and_mask if shifted else with_bias
        return run(t["q"], t["k"], t["v"], score_mod=score_mod, scale=HEAD_DIM**-0.5)

    return attend


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(attend: Callable, t: dict, shifted: bool, reference: torch.Tensor, repeats: int) -> dict:
    device = t["q"].device
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = attend(t, shifted)
        synchronize(device)
        first_s = time.perf_counter() - start
    except Exception as error:  # a backend that refuses these inputs is a row, not the end of the run
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            attend(t, shifted)
        synchronize(device)
        times.append(time.perf_counter() - start)
    times.sort()
    deviation = (out[..., :HEAD_DIM].float() - reference[..., :HEAD_DIM]).abs().max()
    return {
        "ms": round(1000 * times[len(times) // 2], 4),
        "first_call_s": round(first_s, 3),
        "max_abs_deviation_vs_fp32_math": float(deviation),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "attention_kernels_out"))
    parser.add_argument("--side", type=int, default=264, help="padded input side in pixels (window multiple)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true", help="the CPU, a few windows, seconds")
    args = parser.parse_args()
    from torch.nn.attention import SDPBackend

    if args.dry_run:
        device, side, repeats, precisions = torch.device("cpu"), 4 * WINDOW, 2, ("fp32",)
        ways = {"sdpa-math": sdpa(SDPBackend.MATH), "flex": flex(compiled=False)}
    else:
        if not torch.cuda.is_available():
            raise SystemExit("attention_kernels: no CUDA GPU here; use --dry-run")
        device, side, repeats, precisions = torch.device("cuda"), args.side, args.repeats, tuple(PRECISIONS)
        ways = {
            "sdpa-cudnn": sdpa(SDPBackend.CUDNN_ATTENTION),
            "sdpa-efficient": sdpa(SDPBackend.EFFICIENT_ATTENTION),
            "sdpa-math": sdpa(SDPBackend.MATH),
            "flex": flex(compiled=True),
        }
    rows = []
    for shifted in (False, True):
        reference_inputs = inputs(side, torch.float32, device)
        with torch.inference_mode():
            reference = sdpa(SDPBackend.MATH)(reference_inputs, shifted).float()
        for precision in precisions:
            t = inputs(side, PRECISIONS[precision], device)
            for way, attend in ways.items():
                row = {"layer": "shifted" if shifted else "plain", "precision": precision, "way": way}
                row.update(measure(attend, t, shifted, reference, repeats))
                rows.append(row)
                print(json.dumps(row), flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    meta = {"device": name, "torch": torch.__version__, "side": side, "dry_run": args.dry_run}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention_kernels.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
