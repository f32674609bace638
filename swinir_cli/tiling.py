"""Tiled inference for images of any size: window-aligned tiles, seamless blending, bounded memory.

The restoration callable is treated as a black box that maps a float batch (N, C, h, w) to
(N, C_out, h * scale, w * scale); this module knows only its scale and window size and imports nothing
from the rest of swinir-cli.

Geometry. Along each axis, tiles start on multiples of ``window`` (SwinIR's windows and shifted windows are
anchored at the image origin, so a tile that is not aligned would differ everywhere, not only near its
edges). Every tile is ``tile`` pixels long except the last, which ends at the image border and is between
``tile`` and ``tile + window - 1`` long; neighbouring tiles overlap by at least ``overlap`` pixels, the
spare length being spread evenly. A tile's side that lies on the image border is processed exactly as in
the whole image (same content, same padding), so only its inner edges lack context.

Blending. Each tile's weight is a product of one-dimensional profiles. Across an inner edge the profile is
zero over a ``halo`` (the band where a tile lacks context and errs most), then rises as a raised cosine
over the rest of the overlap, reaching one at ``overlap - halo`` from the edge; sides on the image border
are not down-weighted. The profiles are normalised per axis to sum to one, so the 2-D weights of the tile
grid are a partition of unity, and a pixel covered by a single tile keeps that tile's value bit for bit.

Memory. Output is assembled a band (one row of tiles, or one column for a wide image) at a time into the
final uint8/uint16 array. The only float32 buffer is one accumulator, a band deep and as long as the
output's shorter side, reused from band to band. Peak memory is the output, that accumulator and one
forward pass on ``batch`` tiles; what that pass needs, and which tile fits a device, is
:mod:`swinir_cli.memory`'s business: this module knows geometry, not models or devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

__all__ = [
    "WHOLE_IMAGE",
    "AxisTile",
    "RestoreFn",
    "TileEdges",
    "aligned_geometry",
    "aligned_overlap",
    "aligned_tile",
    "axis_tiles",
    "default_overlap",
    "plan_tile_sides",
    "restore_tiled",
    "tile_spans",
]


@dataclass(frozen=True)
class TileEdges:
    """Which sides of a tile lie on the image's own bottom and right border.

    The authors pad a whole image's bottom and right by up to a window more than the window multiple; a
    tile reproduces that only where it ends with the image, and needs no more than the window multiple
    where it ends inside the image (its neighbour covers what the padding would stand in for).
    """

    bottom: bool = True
    right: bool = True


#: The edges of a tile that is the whole image.
WHOLE_IMAGE = TileEdges(True, True)

#: A restoration: (N, C, h, w) and the tiles' edges -> (N, C_out, h * scale, w * scale).
RestoreFn = Callable[[torch.Tensor, TileEdges], torch.Tensor]
ProgressFn = Callable[[int, int], None]
Blend = Literal["smooth", "uniform"]

#: Output lines quantised per step (bounds the temporary copies).
_QUANTISE_LINES = 256


@dataclass(frozen=True)
class AxisTile:
    """One tile's extent along one axis.

    ``start``/``stop`` are input pixels; ``out_start``/``out_stop`` the output pixels where its normalised
    weight is non-zero, and ``weight`` (float32, length ``out_stop - out_start``) those weights.
    """

    start: int
    stop: int
    out_start: int
    out_stop: int
    weight: np.ndarray


def tile_spans(length: int, tile: int, overlap: int, window: int) -> list[tuple[int, int]]:
    """Split ``length`` input pixels into as few window-aligned, overlapping tiles as ``tile`` allows,
    spread evenly.

    ``tile`` and ``overlap`` must be multiples of ``window`` with ``0 <= overlap <= tile // 2``
    (``tile == 0`` means one tile). The count comes first (the fewest tiles of at most ``tile`` that overlap
    by ``overlap``), then the size: the shortest window multiple ``size <= tile`` with which that many tiles
    still overlap by at least ``overlap``. Returns ``[(start, stop), ...]`` in increasing order: every start
    is a multiple of ``window``, every tile but the last is ``size`` long, the last ends at ``length`` and
    is ``size`` to ``size + window - 1`` long (or the whole side when one tile covers it), and the starts
    are spread as evenly as the window grid allows. Raises ValueError for invalid sizes.
    """
    _check_geometry(tile, overlap, window)
    if length <= 0:
        raise ValueError(f"image side {length} is not positive")
    count = _gaps(length, tile, overlap, window) + 1
    if count == 1:
        return [(0, length)]
    size = next(s for s in range(window, tile + 1, window) if _gaps(length, s, overlap, window) < count)
    last_start = (length - size) // window * window
    units, gaps = last_start // window, count - 1
    starts = [i * units // gaps * window for i in range(count)]
    return [(start, start + size) for start in starts[:-1]] + [(last_start, length)]


def _gaps(length: int, size: int, overlap: int, window: int) -> int:
    """Gaps between window-aligned tiles of ``size`` (the last up to a window longer) overlapping by
    ``overlap``: the tile count minus one, or a huge count where ``size`` cannot overlap that much."""
    last_start = (length - size) // window * window if size else 0
    if last_start <= 0:
        return 0
    step = (size - overlap) // window
    return math.ceil(last_start / window / step) if step > 0 else length


def _check_geometry(tile: int, overlap: int, window: int) -> None:
    if window <= 0:
        raise ValueError(f"window {window} is not positive")
    if tile < 0 or tile % window:
        raise ValueError(f"tile {tile} is not a non-negative multiple of the window {window}")
    if overlap < 0 or overlap % window:
        raise ValueError(f"tile overlap {overlap} is not a non-negative multiple of the window {window}")
    if tile and overlap > tile // 2:
        raise ValueError(f"tile overlap {overlap} is more than half the tile {tile}")


def _edge_profile(distance: np.ndarray, halo: float, ramp: float) -> np.ndarray:
    """Weight at ``distance`` input pixels from an inner tile edge: 0 up to ``halo``, raised cosine to 1."""
    if ramp <= 0:
        return (distance > halo).astype(np.float64)
    phase = np.clip((distance - halo) / ramp, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * phase)


def axis_tiles(
    length: int,
    *,
    scale: int,
    tile: int,
    overlap: int,
    window: int,
    halo: int | None = None,
    blend: Blend = "smooth",
) -> list[AxisTile]:
    """Tiles along one axis with their normalised output weights (see :func:`tile_spans`).

    With ``blend="smooth"`` a tile's weight is zero within ``halo`` input pixels of an inner edge (default
    ``overlap // 4``, at most ``overlap // 2``) and rises as a raised cosine to one at ``overlap - halo``;
    with ``blend="uniform"`` every covering tile weighs the same (the authors' averaging). Weights of all
    tiles sum to one at every output pixel. Raises ValueError for invalid sizes.
    """
    if blend not in ("smooth", "uniform"):
        raise ValueError(f"blend {blend!r} is not 'smooth' or 'uniform'")
    spans = tile_spans(length, tile, overlap, window)
    halo = overlap // 4 if halo is None else halo
    if not 0 <= 2 * halo <= overlap:
        raise ValueError(f"tile halo {halo} is not between 0 and half the overlap {overlap}")
    # Distance of each output pixel's centre from the tile's edges, in input pixels.
    centres = (np.arange(length * scale, dtype=np.float64) + 0.5) / scale
    raw = []
    for start, stop in spans:
        inside = (centres > start) & (centres < stop)
        weight = inside.astype(np.float64)
        if blend == "smooth":
            if start > 0:
                weight *= _edge_profile(centres - start, halo, overlap - 2 * halo)
            if stop < length:
                weight *= _edge_profile(stop - centres, halo, overlap - 2 * halo)
        raw.append(weight)
    total = np.sum(raw, axis=0)
    if not np.all(total > 0):
        raise ValueError(f"tiles {spans} with halo {halo} leave output pixels without weight")
    tiles = []
    for (start, stop), weight in zip(spans, raw, strict=True):
        nonzero = np.flatnonzero(weight)
        lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
        tiles.append(AxisTile(start, stop, lo, hi, (weight[lo:hi] / total[lo:hi]).astype(np.float32)))
    return tiles


def restore_tiled(
    image: torch.Tensor,
    fn: RestoreFn,
    *,
    scale: int,
    window: int,
    tile: int,
    overlap: int,
    batch: int = 1,
    max_value: int = 255,
    progress: ProgressFn | None = None,
    halo: int | None = None,
    blend: Blend = "smooth",
) -> np.ndarray:
    """Restore ``image`` tile by tile and return the quantised output.

    ``image``: float32 (1, C, H, W) in [0, 1] on any device. ``fn(x, edges)``: maps (N, C, h, w) to
    (N, C_out, h * scale, w * scale) unclamped floats for any h, w (e.g. the padded forward of a network);
    ``edges`` (:class:`TileEdges`) says which of the tiles' bottom and right sides are the image's.
    ``tile`` is rounded down and ``overlap`` up to multiples of ``window`` (and to at most half the tile);
    ``tile == 0`` or a tile covering the image makes one call on the whole image, identical to the untiled
    result. ``halo`` and ``blend`` are those of :func:`axis_tiles`. ``batch`` tiles of equal
    shape go through one call. ``progress(done, total)`` (in tiles) is called after each call of ``fn``.

    Returns (H * scale, W * scale, C_out) numpy, uint8 when ``max_value == 255`` else uint16, quantised as
    the authors do: ``round(clamp(x, 0, 1) * max_value)`` in float32, halves to even.
    Raises ValueError for invalid sizes; errors of ``fn`` (CUDA out of memory included) propagate.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"image of shape {tuple(image.shape)} is not (1, C, H, W)")
    if batch < 1:
        raise ValueError(f"batch {batch} is not positive")
    if not 0 < max_value <= 65535:
        raise ValueError(f"max_value {max_value} is not in 1..65535")
    tile, overlap = aligned_geometry(tile, overlap, window)
    height, width = image.shape[2:]
    options = dict(scale=scale, tile=tile, overlap=overlap, window=window, halo=halo, blend=blend)
    rows, cols = axis_tiles(height, **options), axis_tiles(width, **options)
    if len(rows) == 1 and len(cols) == 1:
        return _restore_whole(image, fn, scale, max_value, progress)
    return _assemble_bands(image, fn, rows, cols, scale, batch, max_value, progress)


def aligned_tile(tile: int, window: int) -> int:
    """``tile`` rounded down to a multiple of ``window`` (0 stays 0, the whole image; at least one window)."""
    if tile < 0:
        raise ValueError(f"tile {tile} is negative")
    return 0 if tile == 0 else max(window, tile // window * window)


def aligned_overlap(overlap: int, window: int) -> int:
    """``overlap`` rounded up to a multiple of ``window``."""
    if overlap < 0:
        raise ValueError(f"tile overlap {overlap} is negative")
    return -(-overlap // window) * window


def aligned_geometry(tile: int, overlap: int, window: int) -> tuple[int, int]:
    """``tile`` and ``overlap`` as :func:`restore_tiled` takes them: the tile rounded down and the overlap
    up to multiples of ``window``, the overlap then at most half the tile."""
    tile, overlap = aligned_tile(tile, window), aligned_overlap(overlap, window)
    if tile and overlap > tile // 2:
        overlap = tile // 2 // window * window
    return tile, overlap


def _output_dtype(max_value: int) -> np.dtype:
    return np.dtype(np.uint8) if max_value == 255 else np.dtype(np.uint16)


def _quantise(chw: torch.Tensor, max_value: int) -> np.ndarray:
    """(C, h, w) float -> (h, w, C) uint8/uint16 numpy: clamp to [0, 1], scale, round half to even."""
    levels = chw.float().clamp(0, 1).mul_(float(max_value)).round_()
    integer = levels.to(torch.uint8 if max_value == 255 else torch.int32)
    return integer.permute(1, 2, 0).cpu().numpy().astype(_output_dtype(max_value), copy=False)


def _check_output(result: torch.Tensor, batch: int, height: int, width: int, scale: int) -> None:
    expected = (batch, height * scale, width * scale)
    got = (result.shape[0], *result.shape[2:]) if result.ndim == 4 else None
    if got != expected:
        raise ValueError(
            f"restoration returned shape {tuple(result.shape)} for a {batch}x{height}x{width} input at "
            f"scale {scale}; expected ({batch}, C, {height * scale}, {width * scale})"
        )


def _restore_whole(
    image: torch.Tensor, fn: RestoreFn, scale: int, max_value: int, progress: ProgressFn | None
) -> np.ndarray:
    result = fn(image, WHOLE_IMAGE)
    _check_output(result, 1, image.shape[2], image.shape[3], scale)
    if progress is not None:
        progress(1, 1)
    output = np.empty((*result.shape[2:], result.shape[1]), dtype=_output_dtype(max_value))
    _write_quantised(output, result[0], 0, False, max_value)
    return output


def _batches(tiles: Sequence[AxisTile], batch: int) -> Iterator[list[AxisTile]]:
    """Consecutive tiles of equal length that equally do or do not end the side, at most ``batch`` each."""
    group: list[AxisTile] = []
    end = tiles[-1].stop
    for item in tiles:
        first = group[0] if group else None
        if first is not None and (
            len(group) == batch
            or item.stop - item.start != first.stop - first.start
            or (item.stop == end) != (first.stop == end)
        ):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _assemble_bands(
    image: torch.Tensor,
    fn: RestoreFn,
    rows: Sequence[AxisTile],
    cols: Sequence[AxisTile],
    scale: int,
    batch: int,
    max_value: int,
    progress: ProgressFn | None,
) -> np.ndarray:
    """Run the tiles band by band; a band's finished lines go straight into the quantised output.

    Bands are rows of tiles, or columns of tiles for an image wider than high, so that the float32
    accumulator is at most a tile (plus a window) deep and as long as the output's shorter side. It is
    allocated once, with the output, and reused: the lines a band shares with the next move to its top.
    """
    height, width = image.shape[2:]
    by_columns = width > height
    bands, across = (cols, rows) if by_columns else (rows, cols)
    total = len(bands) * len(across)
    done = 0
    output: np.ndarray | None = None
    accumulator: np.ndarray | None = None  # float32 (C_out, deepest band's lines, output length across)
    for index, band_tile in enumerate(bands):
        lines = band_tile.out_stop - band_tile.out_start
        for group in _batches(across, batch):
            pairs = [(item, band_tile) if by_columns else (band_tile, item) for item in group]
            crops = [image[:, :, row.start : row.stop, col.start : col.stop] for row, col in pairs]
            row, col = pairs[0]
            edges = TileEdges(bottom=row.stop == height, right=col.stop == width)
            result = fn(torch.cat(crops) if len(crops) > 1 else crops[0], edges)
            _check_output(result, len(group), row.stop - row.start, col.stop - col.start, scale)
            result = result.detach().to("cpu", torch.float32)
            if by_columns:
                result = result.transpose(2, 3)
            if accumulator is None:
                output = np.empty((height * scale, width * scale, result.shape[1]), _output_dtype(max_value))
                deepest = max(item.out_stop - item.out_start for item in bands)
                accumulator = np.zeros((result.shape[1], deepest, across[-1].out_stop), np.float32)
            band = torch.from_numpy(accumulator[:, :lines])
            for item, tile_out in zip(group, result, strict=True):
                _accumulate(band, tile_out, band_tile, item, scale)
            done += len(group)
            if progress is not None:
                progress(done, total)
        assert output is not None and accumulator is not None, "every band holds at least one tile"
        next_start = bands[index + 1].out_start if index + 1 < len(bands) else band_tile.out_stop
        finished = next_start - band_tile.out_start
        _write_quantised(output, accumulator[:, :finished], band_tile.out_start, by_columns, max_value)
        accumulator[:, : lines - finished] = accumulator[:, finished:lines]
        accumulator[:, lines - finished : lines] = 0
    assert output is not None, "there is at least one band"
    return output


def _write_quantised(
    output: np.ndarray, lines: np.ndarray | torch.Tensor, first: int, by_columns: bool, max_value: int
) -> None:
    """Quantise float ``lines`` (C, n, length) into output rows (or columns) ``first`` to ``first + n``.

    Works through a bounded number of lines at a time, so that the temporary copies stay small.
    """
    for start in range(0, lines.shape[1], _QUANTISE_LINES):
        chunk = lines[:, start : start + _QUANTISE_LINES]
        levels = _quantise(torch.from_numpy(chunk) if isinstance(chunk, np.ndarray) else chunk, max_value)
        at = first + start
        if by_columns:
            output[:, at : at + levels.shape[0]] = levels.transpose(1, 0, 2)
        else:
            output[at : at + levels.shape[0]] = levels


def _accumulate(
    band: torch.Tensor, tile_out: torch.Tensor, band_tile: AxisTile, item: AxisTile, scale: int
) -> None:
    """Add one tile's weighted output into the band accumulator.

    ``tile_out`` is (C, lines along the band's axis, pixels across), ``band`` (C, band lines, output
    length across); ``band_tile`` and ``item`` are the tile's extents along and across the bands.
    """
    first, offset = band_tile.out_start - band_tile.start * scale, item.out_start - item.start * scale
    part = tile_out[:, first : first + band_tile.weight.size, offset : offset + item.weight.size]
    weight = torch.from_numpy(band_tile.weight)[:, None] * torch.from_numpy(item.weight)[None, :]
    band[:, :, item.out_start : item.out_stop] += part * weight


def default_overlap(window: int) -> int:
    """Default tile overlap in input pixels: two windows (16 for the released window-8 models).

    Measured with random-weight SwinIR-S (the reference checkpoint) and SwinIR-M: a tile's error against the
    whole image falls from 20-80 grey levels (RMS) at its inner edge to under 0.3 at 8 pixels and under 0.01
    at 16, so with the default halo (a quarter of the overlap) the blend draws on pixels at least 4 and
    mostly 8 or more pixels away from any inner edge.
    """
    return 2 * window


def plan_tile_sides(length: int, tile: int, overlap: int, window: int) -> list[int]:
    """Input pixels each tile along one side puts through the network, padding included.

    ``tile`` and ``overlap`` are taken as :func:`restore_tiled` takes them (aligned to the window, the
    overlap at most half the tile). A tile's side that ends with the image is padded as the authors pad a
    whole image, to ``(side // window + 1) * window``; one ending inside it only to the window multiple.
    """
    tile, overlap = aligned_geometry(tile, overlap, window)
    return [
        (side // window + 1) * window if stop == length else -(-side // window) * window
        for start, stop in tile_spans(length, tile, overlap, window)
        for side in [stop - start]
    ]
