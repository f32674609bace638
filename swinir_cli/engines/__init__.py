"""Inference engines as data: one table saying what each engine is and how its forward is built.

Each engine is one module of this package (:mod:`.torch_eager`, :mod:`.openvino`, :mod:`.compiled`),
named in the table by module and function (:class:`~swinir_cli.lazy.FunctionRef`) and imported only when
it is chosen (OpenVINO is an optional dependency). This module holds the table without importing
PyTorch, so the settings and the command line read it cheaply: ``--engine``'s choices and help, and
:func:`resolve_engine` (``auto``: the first engine of the table that runs on the device and that ``auto``
may choose), come from it.

An engine is an :class:`EngineSpec` given to :func:`register_engine`; its ``factory`` turns an
:class:`EngineContext` (the network on its device, the compute dtype, where the weights came from) into a
forward ``(N, C, H, W) float32 -> (N, C, H*scale, W*scale) float32`` on that device. An engine whose
``takes_valid`` is set has a forward ``(x, valid)`` too, the network's valid region
(:meth:`swinir_cli.network.SwinIR.forward`), which shape buckets (:mod:`swinir_cli.buckets`) need; an engine
without it runs at the authors' exact shapes. The :class:`~swinir_cli.pipeline.Restorer` checks every
result of any engine for inf/NaN and recomputes it once in fp32 with PyTorch, so an engine only computes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..lazy import FunctionRef

if TYPE_CHECKING:
    import torch

    from ..network import SwinIR

__all__ = [
    "AUTO",
    "COMPUTE_PRECISIONS",
    "ENGINES",
    "EngineContext",
    "EngineSpec",
    "Forward",
    "auto_engines",
    "engine_names",
    "engine_spec",
    "register_engine",
    "resolve_engine",
]

#: The engine name that picks the first engine of the table that runs on the device.
AUTO = "auto"
#: The precisions an engine may compute in (``--precision auto`` is resolved to one of them).
COMPUTE_PRECISIONS = ("fp32", "fp16", "bf16")
#: The device types an engine may run on.
DEVICE_TYPES = {"cpu": "the CPU", "cuda": "CUDA GPUs", "mps": "Apple MPS"}

#: An engine's forward: ``forward(x)``, and ``forward(x, valid)`` for an engine that ``takes_valid``.
Forward = Callable[..., "torch.Tensor"]


@dataclass(frozen=True)
class EngineContext:
    """What an engine's forward is built from.

    Args:
        model: the network, in eval mode, its weights on ``device``.
        device: where the inputs come from and the results must be.
        dtype: the compute precision (float32, float16 or bfloat16), one the engine takes.
        tf32: on CUDA, whether float32 matmuls and convolutions may run in TF32.
        weights_path: the file the weights came from (an engine may cache beside it), or None.
    """

    model: SwinIR
    device: torch.device
    dtype: torch.dtype
    tf32: bool = False
    weights_path: Path | None = None


@dataclass(frozen=True)
class EngineSpec:
    """One engine of the table.

    Args:
        name: what ``--engine`` takes.
        label: the engine's name in messages (``OpenVINO``).
        devices: the device types it runs on (``cpu``, ``cuda``, ``mps``), in the table's order of
            preference for ``auto``.
        precisions: the compute precisions it takes (of :data:`COMPUTE_PRECISIONS`).
        help: one line for ``--engine``'s help.
        factory: builds the forward from an :class:`EngineContext`.
        requires: a module the engine imports (checked before it is built), or None.
        install_hint: how to install ``requires``.
        in_auto: whether ``--engine auto`` may choose it; an engine not measured faster than the one before
            it in the table over a whole run (a compiling engine's first call included) is used only when
            named.
        takes_valid: whether its forward takes the network's valid region as a second argument
            (``forward(x, valid)``), which shape buckets need: a forward that runs the network itself
            does; one of a graph exported for fixed inputs does not, and then buckets are off.

    Raises:
        ValueError: an empty or reserved name, an unknown device type or precision.
    """

    name: str
    label: str
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    help: str
    factory: Callable[[EngineContext], Forward]
    requires: str | None = None
    install_hint: str = ""
    in_auto: bool = True
    takes_valid: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name == AUTO or not self.name.replace("-", "").isalnum():
            raise ValueError(
                f"an engine needs a name of letters, digits and '-', other than auto: {self.name!r}"
            )
        unknown = [device for device in self.devices if device not in DEVICE_TYPES]
        if not self.devices or unknown:
            raise ValueError(f"engine {self.name}: device types must be of {', '.join(DEVICE_TYPES)}")
        if not self.precisions or any(p not in COMPUTE_PRECISIONS for p in self.precisions):
            raise ValueError(f"engine {self.name}: precisions must be of {', '.join(COMPUTE_PRECISIONS)}")

    def runs_on(self, device_type: str) -> bool:
        return device_type in self.devices

    def check(self, device_type: str, precision: str) -> None:
        """Refuse a device or precision this engine does not take, or an engine not installed.

        Raises:
            UsageError: naming what the engine takes instead.
        """
        if not self.runs_on(device_type):
            places = " or ".join(DEVICE_TYPES[device] for device in self.devices)
            fallback = resolve_engine(AUTO, device_type)
            raise UsageError(
                f"the {self.label} engine runs on {places}, not {device_type}; use --engine {fallback.name}"
            )
        if precision not in self.precisions:
            raise UsageError(
                f"the {self.label} engine computes in {', '.join(self.precisions)}, not {precision}; "
                "use --precision fp32"
            )
        if self.requires is not None and importlib.util.find_spec(self.requires) is None:
            raise UsageError(
                f"the {self.label} engine needs the {self.requires} package: {self.install_hint}"
            )


#: The engines by name, in order of preference for ``auto``.
ENGINES: dict[str, EngineSpec] = {}


def register_engine(spec: EngineSpec) -> EngineSpec:
    """Add ``spec`` to the table (after the engines already there); returns it.

    Raises:
        ValueError: an engine of that name is registered already.
    """
    if spec.name in ENGINES:
        raise ValueError(f"an engine named {spec.name!r} is registered already")
    ENGINES[spec.name] = spec
    return spec


def auto_engines() -> tuple[EngineSpec, ...]:
    """The engines ``auto`` chooses among, in order of preference."""
    return tuple(spec for spec in ENGINES.values() if spec.in_auto)


def engine_names() -> tuple[str, ...]:
    """What ``--engine`` accepts: ``auto`` and every engine of the table."""
    return (AUTO, *ENGINES)


def engine_spec(name: str) -> EngineSpec:
    """The registered engine ``name`` (not ``auto``: see :func:`resolve_engine`).

    Raises:
        UsageError: no engine has that name.
    """
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r} (--engine): use {', '.join(engine_names())}")
    return ENGINES[name]


def resolve_engine(name: str, device_type: str, precision: str = "fp32") -> EngineSpec:
    """The engine that ``name`` means on a ``device_type`` device: ``auto`` is the first of
    :func:`auto_engines` that runs there; a named engine must run there, take ``precision`` and be installed.

    Raises:
        UsageError: an unknown engine, one that does not run on the device or take the precision, or
            one whose package is not installed.
    """
    if name == AUTO:
        return next(spec for spec in auto_engines() if spec.runs_on(device_type))
    spec = engine_spec(name)
    spec.check(device_type, precision)
    return spec


#: How to install the OpenVINO engine's package.
OPENVINO_INSTALL = "pip install 'swinir-cli[openvino]'"

register_engine(
    EngineSpec(
        "torch",
        "PyTorch",
        ("cuda", "mps", "cpu"),
        COMPUTE_PRECISIONS,
        "PyTorch eager (autocast below fp32)",
        FunctionRef("swinir_cli.engines.torch_eager", "eager_forward"),
        takes_valid=True,
    )
)
register_engine(
    EngineSpec(
        "openvino",
        "OpenVINO",
        ("cpu",),
        ("fp32", "bf16"),
        "OpenVINO on the CPU (the openvino extra)",
        FunctionRef("swinir_cli.engines.openvino", "openvino_forward"),
        requires="openvino",
        install_hint=OPENVINO_INSTALL,
    )
)
register_engine(
    EngineSpec(
        "compiled",
        "compiled PyTorch",
        ("cuda", "cpu"),
        COMPUTE_PRECISIONS,
        "torch.compile per input shape, kept in the cache folder",
        FunctionRef("swinir_cli.engines.compiled", "compiled_forward"),
        in_auto=False,
        takes_valid=True,
    )
)
