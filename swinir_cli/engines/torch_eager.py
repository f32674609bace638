"""SwinIR through PyTorch eager: the network as it is in fp32, under autocast below fp32.

Under autocast, matmuls and convolutions run in fp16/bf16, LayerNorm in fp32
(:class:`swinir_cli.network.FloatLayerNorm`) and softmax in fp32 inside the attention kernel. On CUDA,
TF32 is on or off as asked for the duration of each call (:func:`swinir_cli.devices.cuda_tf32`);
elsewhere the global settings stay as they are. :func:`precision_forward` wraps any callable network so,
as the compiled engine wraps its compiled graphs.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from ..devices import cuda_tf32
from . import EngineContext, Forward

__all__ = ["eager_forward", "precision_forward"]


def eager_forward(context: EngineContext) -> Forward:
    """The forward of ``context.model`` in ``context.dtype``; its result is float32."""
    return precision_forward(context.model, context)


def precision_forward(network: Forward, context: EngineContext) -> Forward:
    """``network`` (the model or a compiled form of it) computing in ``context.dtype`` on
    ``context.device``, TF32 as ``context.tf32`` says on CUDA; its result is float32. The forward takes the
    network's valid region as an optional second argument and hands it on: ``network(x, valid)``."""
    device, dtype = context.device, context.dtype
    matmuls = functools.partial(cuda_tf32, context.tf32) if device.type == "cuda" else contextlib.nullcontext

    def forward(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        with matmuls():
            if dtype == torch.float32:
                return network(x, valid)
            with torch.autocast(device.type, dtype=dtype):
                y = network(x, valid)
            return y.float()

    return forward
