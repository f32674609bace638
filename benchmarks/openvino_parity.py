"""The OpenVINO engine against the PyTorch path on all 31 released architectures (random weights).

For every row of ../shared/reference/official_models.json the network is built with that row's config and
random weights, and one random RGB (or gray) image whose sides are not window multiples is restored
whole by both engines; the 8-bit outputs must agree within the project's parity tolerance (at most one
level, on at most 0.1% of values). Also prints what the first OpenVINO call cost (tracing, conversion and
compilation, no disk cache) against the PyTorch forward. Slow: one conversion per architecture.

    python benchmarks/openvino_parity.py [--size 37] [--only 001_ 002_]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from swinir_cli.network import SwinIR, SwinIRConfig
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
CONFIG_KEYS = set(SwinIRConfig.__dataclass_fields__)


def random_network(row: dict) -> SwinIR:
    config = {key: value for key, value in row["config"].items() if key in CONFIG_KEYS}
    model = SwinIR(SwinIRConfig(**config)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=37)
    parser.add_argument("--only", nargs="*", default=[], help="file name prefixes to keep")
    args = parser.parse_args()
    rows = json.loads((REFERENCE / "official_models.json").read_text())
    rows = [row for row in rows if not args.only or row["file"].startswith(tuple(args.only))]
    failures = 0
    print(f"{'file':58} {'max diff':>8} {'differ %':>9} {'first OV call s':>16} {'torch s':>8}")
    for row in rows:
        model = random_network(row)
        channels = model.config.in_chans
        pixels = np.random.default_rng(1).integers(
            0, 256, (args.size, args.size + 6, channels), dtype=np.uint8
        )
        torch_restorer = Restorer(model, RestoreSettings(device="cpu", tile=0, engine="torch"))
        start = time.perf_counter()
        expected = torch_restorer.restore_pixels(pixels)
        torch_seconds = time.perf_counter() - start
        start = time.perf_counter()
        got = Restorer(model, RestoreSettings(device="cpu", tile=0, engine="openvino")).restore_pixels(pixels)
        openvino_seconds = time.perf_counter() - start
        diff = np.abs(got.astype(int) - expected.astype(int))
        differ = float(np.mean(diff > 0) * 100)
        ok = diff.max() <= 1 and differ <= 0.1
        failures += not ok
        print(
            f"{row['file']:58} {diff.max():>8} {differ:>8.3f}%{openvino_seconds:>16.1f} {torch_seconds:>8.2f}"
            f"{'' if ok else '  OUT OF TOLERANCE'}",
            flush=True,
        )
    print(f"\n{len(rows) - failures} of {len(rows)} architectures within tolerance")


if __name__ == "__main__":
    main()
