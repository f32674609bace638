"""Shape buckets: a few canonical forward shapes for inputs of any size (geometry only, no PyTorch).

A forward pass pays set-up costs once per input shape and process (cuDNN plans, autocast caches, the
network's window layouts, compiled graphs): over a batch of images of mixed sizes, every image is a new
shape. With buckets, the padded side of a forward input (a window multiple, padded as the authors pad)
is padded further, by the caller, up to the next rung of a short ladder, so that every input of a run
falls into one of a few tens of shapes, each paying its set-up once. The network then computes the
authors' padded region alone (``valid`` of :meth:`swinir_cli.network.SwinIR.forward`): the pixels are those
of the authors' shapes, and the padding costs compute only.

The ladder's rungs grow by x1.5 and x1.33 in turn (64, 96, 128, 192, 256, 384, 512, 768, 1024, each
rounded up to a multiple of the window); above the top rung a side rounds up to a multiple of 256 (also
rounded up to the window). Hence a side of at least the first rung grows by less than
:data:`MAX_SIDE_GROWTH` (1.5x; 1.48x at worst for window 8, from 520 to 768), and a smaller side becomes
the first rung. Sides up to 1024 fall into at most nine buckets each, so at most 81 shapes.
"""

from __future__ import annotations

__all__ = ["BUCKET_RUNGS", "BUCKET_STEP_ABOVE", "MAX_SIDE_GROWTH", "bucket_side"]

#: The ladder's rungs, in pixels, before they are rounded up to the window.
BUCKET_RUNGS = (64, 96, 128, 192, 256, 384, 512, 768, 1024)
#: Above the top rung a side rounds up to a multiple of this (itself rounded up to the window).
BUCKET_STEP_ABOVE = 256
#: A side of at least the first rung grows by less than this factor into its bucket.
MAX_SIDE_GROWTH = 1.5


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def bucket_side(side: int, window: int) -> int:
    """The bucket of a side of ``side`` pixels: the smallest rung (rounded up to a multiple of
    ``window``) that holds it, or above the top rung ``side`` rounded up to a multiple of the coarse step.

    Raises:
        ValueError: ``side`` or ``window`` is not positive.
    """
    if side <= 0 or window <= 0:
        raise ValueError(f"a bucket needs a positive side and window, got side {side}, window {window}")
    for rung in BUCKET_RUNGS:
        if side <= _round_up(rung, window):
            return _round_up(rung, window)
    return _round_up(side, _round_up(BUCKET_STEP_ABOVE, window))
