"""The x8 self-ensemble ("test-time augmentation"): flips and 90-degree rotations, averaged.

It wraps any image-to-image callable, so the tiler and the pipeline use it like the plain network.
Eight forward passes buy a small gain in fidelity; the outputs are averaged before quantisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["TRANSFORMS", "self_ensemble"]

#: (rotations by 90 degrees, horizontal flip) for each of the eight symmetries of the square.
TRANSFORMS = tuple((turns, flip) for flip in (False, True) for turns in range(4))


def _apply(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    if flip:
        x = torch.flip(x, [-1])
    return torch.rot90(x, turns, dims=(-2, -1))


def _invert(y: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    y = torch.rot90(y, -turns, dims=(-2, -1))
    return torch.flip(y, [-1]) if flip else y


def self_ensemble(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap ``fn`` ((N, C, h, w) -> (N, C', h*s, w*s)) into the mean of its eight transformed results."""

    def ensembled(x: torch.Tensor) -> torch.Tensor:
        total = None
        for turns, flip in TRANSFORMS:
            y = _invert(fn(_apply(x, turns, flip)), turns, flip)
            total = y if total is None else total + y
        return total / len(TRANSFORMS)

    return ensembled
