"""SwinIR through OpenVINO's CPU plugin (``pip install 'swinir-cli[openvino]'``).

The network is converted once per input shape (tiles come in a handful of shapes) and compiled for the
CPU with fp32 inference precision unless bf16 is asked for. With a ``cache_dir`` (:func:`openvino_forward`
puts it beside the weights file, in ``.<file name>.openvino/``, when that folder can be written) the
converted model is saved there as OpenVINO IR, keyed by the weights file, the shape and the precision,
and compiled through OpenVINO's own model cache (``CACHE_DIR``), so a later
process neither converts nor compiles again.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from ..network import SwinIR
from . import OPENVINO_INSTALL, EngineContext

__all__ = ["OpenVinoForward", "openvino_forward"]


def _import_openvino():
    try:
        import openvino
    except ImportError:
        raise UsageError(f"the OpenVINO engine needs the openvino package: {OPENVINO_INSTALL}") from None
    return openvino


def openvino_forward(context: EngineContext) -> OpenVinoForward:
    """The engine's forward for ``context``: bf16 when asked, else fp32, cached beside the weights."""
    cache_dir, weights_key = _cache_place(context.weights_path)
    bf16 = context.dtype == torch.bfloat16
    return OpenVinoForward(context.model, bf16=bf16, cache_dir=cache_dir, weights_key=weights_key)


def _cache_place(weights_path: Path | None) -> tuple[Path | None, str]:
    """(cache folder, key of the weights file): the folder beside the weights where it is writable,
    else (None, "")."""
    if weights_path is None:
        return None, ""
    weights = weights_path.resolve()
    folder = weights.parent / f".{weights.name}.openvino"
    try:
        folder.mkdir(exist_ok=True)
        stat = weights.stat()
    except OSError:
        return None, ""
    return folder, f"{weights}|{stat.st_size}|{stat.st_mtime_ns}"


class OpenVinoForward:
    """``forward(x)``: (N, C, H, W) float32 CPU tensor -> the network's output, computed by OpenVINO.

    Args:
        model: the network (its weights are read once per shape, at conversion).
        bf16: compile with bf16 inference precision instead of fp32.
        cache_dir: where converted and compiled models are kept across processes (None: nowhere).
        weights_key: identifies the weights in the cache (e.g. the weights file's path, size and mtime).

    Raises:
        UsageError: openvino is not installed.
    """

    def __init__(
        self, model: SwinIR, *, bf16: bool = False, cache_dir: Path | None = None, weights_key: str = ""
    ) -> None:
        self._ov = _import_openvino()
        self.model = model
        self.precision = "bf16" if bf16 else "f32"
        self.cache_dir = cache_dir
        self.weights_key = weights_key
        self._core = self._ov.Core()
        self._compiled: dict[tuple[int, ...], object] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = tuple(x.shape)
        if shape not in self._compiled:
            self._compiled[shape] = self._compile(shape)
        request = self._compiled[shape]
        result = request(np.ascontiguousarray(x.detach().cpu().float().numpy()))[0]
        return torch.from_numpy(np.array(result, copy=True))

    def _compile(self, shape: tuple[int, ...]) -> object:
        config = {"INFERENCE_PRECISION_HINT": self.precision}
        if self.cache_dir is None:
            return self._core.compile_model(self._convert(shape), "CPU", config)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        key = f"{self.weights_key}|{shape}|{self._ov.__version__}".encode()
        ir = self.cache_dir / f"swinir-{hashlib.sha256(key).hexdigest()[:20]}.xml"
        if not ir.exists():
            partial = ir.with_name(f".{ir.stem}.partial.xml")
            self._ov.save_model(self._convert(shape), partial, compress_to_fp16=False)
            partial.with_suffix(".bin").replace(ir.with_suffix(".bin"))
            partial.replace(ir)
        config["CACHE_DIR"] = str(self.cache_dir / "compiled")
        return self._core.compile_model(ir, "CPU", config)

    def _convert(self, shape: tuple[int, ...]) -> object:
        example = torch.zeros(shape)
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The trace is for this one shape: the shape-dependent Python branches it warns about are meant.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            self.model(example)  # fills the window and bias caches: the trace holds them as constants
            traced = torch.jit.trace(self.model, example, check_trace=False)
            return self._ov.convert_model(traced, example_input=example, input=[list(shape)])
