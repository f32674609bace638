"""Whole-process CPU time of the same commands on two source trees, alternating, in one sitting.

For a change that must not make anything slower (a refactoring): each round runs every command once on the
old tree and once on the new one, in alternating order (old-new, then new-old), each in a fresh
``python -m swinir_cli`` process with that tree first on ``PYTHONPATH``, so start-up, model loading,
decoding, the network, tiling, encoding and writing all count, as a user meets them. Prints, per command,
the median seconds of each tree and the ratio new/old; a ratio within the machine's noise (10-30 % on the
shared 2-core machines) is "unchanged". Writes the figures as JSON to ``--json`` when given.

The commands use random-weight checkpoints and test images from ``../shared`` (see its README)::

    git -C . archive <old commit> | tar -x -C /tmp/old   # the old tree
    OMP_NUM_THREADS=2 python benchmarks/old_vs_new.py --old /tmp/old --new . [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"
TESTSETS = SHARED / "testsets"

#: name -> arguments after ``python -m swinir_cli``; ``{out}`` is a fresh folder each run (it ends in "/",
#: so one input writes into it too).
COMMANDS: dict[str, list[str]] = {
    "upscale SwinIR-S x4, Set5 x4 inputs (5 images)": [
        "upscale", str(TESTSETS / "Set5" / "LR_bicubic" / "X4"), "-o", "{out}",
        "--weights", str(REFERENCE / "swinir_s_x4_random.pth"),
    ],
    "denoise tiny colour model, McMaster 500x500 (1 image, 16 tiles)": [
        "denoise", str(TESTSETS / "McMaster" / "1.tif"), "-o", "{out}",
        "--sigma", "15", "--weights", str(REFERENCE / "tiny" / "dn_color.pth"), "--tile", "128",
    ],
    "dejpeg tiny gray model, classic5 (3 images)": [
        "dejpeg", *(str(TESTSETS / "classic5" / f"{n}.bmp") for n in ("baboon", "barbara", "boats")),
        "-o", "{out}", "--quality", "10", "--weights", str(REFERENCE / "tiny" / "car_gray_w7.pth"),
    ],
    "eval tiny x2 model, Set5 from HR": [
        "eval", "--weights", str(REFERENCE / "tiny" / "sr_pixelshuffle_x2.pth"), "--gt",
        str(TESTSETS / "Set5" / "HR"), "--scale", "2",
    ],
    "models (start-up and listing)": ["models"],
}  # fmt: skip


def run_once(tree: Path, arguments: list[str]) -> float:
    """Seconds of one ``python -m swinir_cli`` process on ``tree``; fails loudly if the command fails."""
    with tempfile.TemporaryDirectory() as scratch:
        filled = [argument.replace("{out}", scratch + "/out/") for argument in arguments]
        command = [sys.executable, "-m", "swinir_cli", *filled]
        env = {**os.environ, "PYTHONPATH": str(tree), "SWINIR_CACHE": scratch + "/cache"}
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {arguments[0]} failed ({done.returncode}): {done.stderr[-800:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the old source tree (holds swinir_cli/)")
    parser.add_argument("--new", type=Path, required=True, help="the new source tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    for tree in trees.values():
        if not (tree / "swinir_cli").is_dir():
            raise SystemExit(f"{tree} holds no swinir_cli/")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    times: dict[str, dict[str, list[float]]] = {name: {"old": [], "new": []} for name in COMMANDS}
    for round_ in range(args.rounds):
        order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
        for name, arguments in COMMANDS.items():
            for side in order:
                times[name][side].append(run_once(trees[side], arguments))
    figures = {}
    print(f"{'command':66} {'old s':>7} {'new s':>7} {'new/old':>8}")
    for name, sides in times.items():
        old, new = statistics.median(sides["old"]), statistics.median(sides["new"])
        figures[name] = {"old_s": sides["old"], "new_s": sides["new"], "ratio": new / old}
        print(f"{name:66} {old:7.2f} {new:7.2f} {new / old:8.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, "figures": figures}))


if __name__ == "__main__":
    main()
