"""Load time of a checkpoint: ``torch.load`` of the ``.pth`` vs the cache's memory-mapped ``.safetensors``.

Two checkpoints: the released SwinIR-S x4 layout with random weights (``../shared/reference``) and a
random SwinIR-M x4 state dict built from the released file's tensor shapes (the manifest). Each goes through
the real cache: a registry entry pointing at the file (``file://``), ``download.verified_weights_path``
verifies it and writes the safetensors copy. Times are medians of repeated runs in this one process,
with the files in the page cache (warm); the ratio is what to compare across machines.

Also checks that both files give bit-identical tensors and bit-identical network outputs.

    python benchmarks/load_time.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from swinir_cli.checkpoint import load_model, read_state_dict
from swinir_cli.download import verified_weights_path
from swinir_cli.registry import get_model

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
SWINIR_M_FILE = "001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth"


def random_swinir_m(path: Path) -> None:
    """Save a random SwinIR-M x4 checkpoint with the released file's tensor names and shapes."""
    rows = json.loads((REFERENCE / "official_models.json").read_text())
    shapes = next(row["state_dict"] for row in rows if row["file"] == SWINIR_M_FILE)
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("relative_position_index"):
            state[name] = torch.randint(0, shape[0], shape, generator=generator)
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.02
    torch.save({"params": state}, path)


def register(registry: Path, files: dict[str, Path]) -> None:
    lines = []
    for name, path in files.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines += [
            f"[models.{name}]",
            'task = "upscale"',
            "scale = 4",
            f'url = "{path.as_uri()}"',
            f'sha256 = "{digest}"',
            f"size = {path.stat().st_size}",
            'description = "benchmark"',
            "",
        ]
    registry.write_text("\n".join(lines))


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def same_outputs(pth: Path, safetensors: Path) -> bool:
    x = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(load_model(pth)(x), load_model(safetensors)(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        random_swinir_m(work / "swinir_m_x4_random.pth")
        files = {
            "swinir-s-x4": REFERENCE / "swinir_s_x4_random.pth",
            "swinir-m-x4": work / "swinir_m_x4_random.pth",
        }
        register(work / "bench.toml", files)
        os.environ["SWINIR_REGISTRY"] = str(work / "bench.toml")
        os.environ["SWINIR_CACHE_DIR"] = str(work / "cache")
        print(
            f"{'model':<12} {'pth MB':>7} {'torch.load':>11} {'safetensors':>12} {'ratio':>6}  "
            f"{'load_model pth':>15} {'safetensors':>12} {'ratio':>6}  identical"
        )
        for name in files:
            entry = get_model(name)
            copy = verified_weights_path(entry)
            pth = copy.with_name(entry.file)
            read_pth = median_seconds(lambda p=pth: read_state_dict(p), args.repeats)
            read_copy = median_seconds(lambda p=copy: read_state_dict(p), args.repeats)
            model_pth = median_seconds(lambda p=pth: load_model(p), args.repeats)
            model_copy = median_seconds(lambda p=copy: load_model(p), args.repeats)
            identical = same_tensors(read_state_dict(pth), read_state_dict(copy)) and same_outputs(pth, copy)
            size_mb = pth.stat().st_size / 1e6
            print(
                f"{name:<12} {size_mb:>7.1f} {read_pth * 1e3:>9.1f}ms {read_copy * 1e3:>10.1f}ms "
                f"{read_pth / read_copy:>5.1f}x  {model_pth * 1e3:>13.1f}ms {model_copy * 1e3:>10.1f}ms "
                f"{model_pth / model_copy:>5.1f}x  {identical}"
            )


if __name__ == "__main__":
    main()
