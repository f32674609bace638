"""SwinIR under ``torch.compile`` (Inductor): one compiled graph per input shape, kept on disk.

Every input shape is compiled once per process with static shapes (``dynamic=False``: Inductor's best
kernels; shape buckets, :mod:`swinir_cli.buckets`, keep the shapes few, their valid region being a tensor
input of the graph, not a shape), and Dynamo may keep up to
:data:`COMPILED_SHAPES` of them. Inductor's artifacts (its FX graph cache, generated kernels) are kept in
``inductor/`` of swinir's cache folder (:func:`swinir_cli.registry.cache_dir`, moved by
``$SWINIR_CACHE_DIR``), so a later process loads a shape's graph instead of compiling it again; a
``TORCHINDUCTOR_CACHE_DIR`` the user set is kept. On CUDA, shapes of at most :data:`CUDA_GRAPH_PIXELS`
padded pixels are replayed as CUDA graphs (``mode="reduce-overhead"``), which pay where launching the
kernels costs as much as running them. Below fp32 the graphs run under autocast as the eager engine's
forward does (:func:`~swinir_cli.engines.torch_eager.precision_forward`).
"""

from __future__ import annotations

import os

import torch
import torch._dynamo
import torch._inductor.config
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

from ..registry import cache_dir
from . import EngineContext, Forward
from .torch_eager import precision_forward

__all__ = ["COMPILED_SHAPES", "CUDA_GRAPH_PIXELS", "INDUCTOR_CACHE_VARIABLE", "compiled_forward"]

#: Input shapes Dynamo keeps compiled per process (its default of 8 would fall back to eager after eight
#: shapes; sides up to 1024 fall into at most 81 shape buckets).
COMPILED_SHAPES = 128
#: On CUDA, inputs of at most this many padded pixels run as CUDA graphs. From issue 22's figures on one
#: H200 (ms per forward, eager / compiled / compiled with CUDA graphs): 136x136
#: 17.3 / 24.3 / 10.4, 264x264 50.8 / 35.0 / 34.8, 520x520 179.5 / 92.9 / 94.1: graphs pay up to 264x264.
CUDA_GRAPH_PIXELS = 264 * 264
#: The environment variable that places Inductor's cache.
INDUCTOR_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"

#: The Inductor cache folders this module set (a later engine may move them; a user's folder is kept).
_placed: list[str] = []


def compiled_forward(context: EngineContext) -> Forward:
    """The forward of ``context.model`` compiled by Inductor, in ``context.dtype``; its result is float32.

    Compiling happens at a shape's first call (seconds to minutes), not here. Before every call the
    network's window layouts of the shape are cached
    (:meth:`~swinir_cli.network.SwinIR.cache_window_layouts`), so each shape is one graph, and a shape
    met again after the layout cache made room is not traced again.
    """
    _place_inductor_cache()
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, COMPILED_SHAPES)
    model = context.model

    def with_layouts(compiled: Forward) -> Forward:
        def network(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
            model.cache_window_layouts(x.shape[-2], x.shape[-1], x.device)  # in autocast's dtype
            return compiled(x, valid)

        return precision_forward(network, context)

    plain = with_layouts(torch.compile(model, dynamic=False))
    if context.device.type != "cuda":
        return plain
    graphs = with_layouts(torch.compile(model, dynamic=False, mode="reduce-overhead"))

    def forward(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] > CUDA_GRAPH_PIXELS:
            return plain(x, valid)
        torch.compiler.cudagraph_mark_step_begin()
        return graphs(x, valid).clone()  # a graph's output is overwritten by its next replay

    return forward


def _place_inductor_cache() -> None:
    """Point Inductor's cache (FX graph cache on) at ``inductor/`` in swinir's cache folder, unless the
    user set ``TORCHINDUCTOR_CACHE_DIR`` (Inductor writes its own default there once it has looked, which
    counts as unset). Called before the first compile."""
    unset = (None, os.path.abspath(default_cache_dir()), *_placed)
    if os.environ.get(INDUCTOR_CACHE_VARIABLE) in unset:
        folder = os.path.abspath(cache_dir() / "inductor")  # absolute, as Inductor writes it back
        os.environ[INDUCTOR_CACHE_VARIABLE] = folder
        _placed.append(folder)
    torch._inductor.config.fx_graph_cache = True
