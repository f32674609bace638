"""Shared fixtures: the reference data in ../shared (beside the repository) and tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference"
TESTSETS = SHARED / "testsets"
TINY_CASES = sorted(p.stem for p in (REFERENCE / "tiny").glob("*.pth"))
SWINIR_S_X4 = REFERENCE / "swinir_s_x4_random.pth"


def official_models() -> list[dict]:
    """The manifest of the 31 released checkpoints (names, urls, hashes, configs, tensor shapes)."""
    return json.loads((REFERENCE / "official_models.json").read_text())


def random_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the given names and shapes (small values keep activations tame)."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) * 0.02 for name, shape in shapes.items()}


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data missing: {REFERENCE} (the repository expects ../shared beside it)")
    return REFERENCE
