"""glibc allocator tuning (swinir_cli.cpu.tune_allocator) on vs off: time, page faults and peak memory.

Each side runs in its own fresh process (the setting is process-wide and cannot be undone), the two sides
alternating, ``--repeats`` times each; every process runs ``--passes`` CPU forwards of random-weight
SwinIR-S x4 on a ``--size`` square (a tiled run is many such passes). Prints medians and the on/off ratios.

    python benchmarks/cpu_allocator.py [--size 384] [--passes 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from swinir_cli.cpu import tune_allocator
from swinir_cli.network import SwinIR, SwinIRConfig

SWINIR_S_X4 = SwinIRConfig(
    embed_dim=60, depths=(6, 6, 6, 6), num_heads=(6, 6, 6, 6), upscale=4, upsampler="pixelshuffledirect"
)


def child(tuned: bool, size: int, passes: int) -> dict:
    """One side in this process: seconds of the passes, minor page faults, peak resident bytes."""
    applied = tune_allocator() if tuned else False
    model = SwinIR(SWINIR_S_X4).eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(x[:, :, :64, :64])  # load the kernels before the clock starts
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        for _ in range(passes):
            model(x)
        seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "applied": applied,
        "seconds": seconds,
        "faults": after.ru_minflt - before.ru_minflt,
        "peak_bytes": after.ru_maxrss * 1024,
    }


def run_side(tuned: bool, size: int, passes: int) -> dict:
    command = [sys.executable, __file__, "--child", "on" if tuned else "off"]
    command += ["--size", str(size), "--passes", str(passes)]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child == "on", args.size, args.passes)))
        return
    machine = platform.processor() or platform.machine()
    print(f"{machine}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"SwinIR-S x4, {args.passes} forwards of {args.size}x{args.size} per process, alternating, "
        f"median of {args.repeats}\n"
    )
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for _ in range(args.repeats):
        for tuned in (False, True):
            runs[tuned].append(run_side(tuned, args.size, args.passes))
    assert all(run["applied"] for run in runs[True]), "mallopt was refused on this machine"
    for key, unit, factor in (
        ("seconds", "s", 1),
        ("faults", "k faults", 1e-3),
        ("peak_bytes", "MiB", 2**-20),
    ):
        off = statistics.median(run[key] for run in runs[False])
        on = statistics.median(run[key] for run in runs[True])
        print(
            f"{key:11} off {off * factor:10.1f} {unit:8} on {on * factor:10.1f} {unit:8} ratio {on / off:.2f}"
        )


if __name__ == "__main__":
    main()
