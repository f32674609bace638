"""Whole-image CPU forward time (best of N runs) of the bundled network, fast paths on vs off, in one run.

"Off" is the authors' order of operations: position bias gathered and shifted-window mask rebuilt (on the
CPU) in every block of every forward, explicit softmax attention. "On" caches both per input size and uses
``scaled_dot_product_attention``. Random weights with the released architectures' shapes.

    python benchmarks/network_speed.py [--repeats 3] [--size 128]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from swinir_cli.network import SwinIR, SwinIRConfig

ARCHITECTURES = {
    "SwinIR-M x4 (classical)": SwinIRConfig(upscale=4, upsampler="pixelshuffle"),
    "SwinIR-S x4 (lightweight)": SwinIRConfig(
        embed_dim=60, depths=(6, 6, 6, 6), num_heads=(6, 6, 6, 6), upscale=4, upsampler="pixelshuffledirect"
    ),
}


def time_forward(model: SwinIR, x: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    """Best time of ``repeats`` runs after a warm-up: the least disturbed by other work on the machine."""
    with torch.inference_mode():
        out = model(x)  # warm-up (and, when optimised, the caches)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = model(x)
            times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}")
    print(f"input {args.size}x{args.size}, best of {args.repeats} runs after a warm-up\n")
    header = f"{'network':28} {'authors order (s)':>18} {'cached+SDPA (s)':>16} {'speed-up':>9}"
    print(f"{header} {'max |diff|':>11}")
    torch.manual_seed(0)
    x = torch.rand(1, 3, args.size, args.size)
    for name, config in ARCHITECTURES.items():
        model = SwinIR(config).eval()
        for p in model.parameters():  # break symmetric init so attention is not trivial
            p.data.add_(torch.randn_like(p) * 0.02)
        model.optimized = False
        slow, reference = time_forward(model, x, args.repeats)
        model.optimized = True
        fast, out = time_forward(model, x, args.repeats)
        diff = (out - reference).abs().max().item()
        print(f"{name:28} {slow:18.2f} {fast:16.2f} {slow / fast:8.2f}x {diff:11.2e}")


if __name__ == "__main__":
    main()
