"""swinir-cli: restore images with SwinIR (super-resolution, denoising, JPEG artifact removal).

The command line (``swinir``) is a thin layer over this API::

    from swinir_cli import RestoreSettings, load_restorer
    restorer = load_restorer("real-x4", RestoreSettings(tile=0))   # a registry name or a checkpoint path
    restored = restorer.restore_pixels(pixels)          # (H, W, 3) uint8/uint16 -> (4H, 4W, 3)
"""

from importlib import import_module
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # the real imports, for type checkers and editors
    from .checkpoint import detect_config, load_model, read_state_dict
    from .errors import (
        CheckpointError,
        DownloadError,
        ImageError,
        ModelNotFoundError,
        StateDictMismatchError,
        SwinIRError,
        UsageError,
    )
    from .imageio import LoadedImage, read_image, write_image
    from .network import SwinIR, SwinIRConfig
    from .pipeline import Restorer
    from .registry import load_registry
    from .resolve import load_restorer
    from .settings import RestoreSettings

#: Where each public name lives. Imported on first use, so that ``swinir --help`` does not load PyTorch.
_HOMES = {
    "detect_config": "checkpoint",
    "load_model": "checkpoint",
    "read_state_dict": "checkpoint",
    "CheckpointError": "errors",
    "DownloadError": "errors",
    "ImageError": "errors",
    "ModelNotFoundError": "errors",
    "StateDictMismatchError": "errors",
    "SwinIRError": "errors",
    "UsageError": "errors",
    "LoadedImage": "imageio",
    "read_image": "imageio",
    "write_image": "imageio",
    "SwinIR": "network",
    "SwinIRConfig": "network",
    "Restorer": "pipeline",
    "load_registry": "registry",
    "load_restorer": "resolve",
    "RestoreSettings": "settings",
}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'swinir_cli' has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)


__all__ = [
    "CheckpointError",
    "DownloadError",
    "ImageError",
    "LoadedImage",
    "ModelNotFoundError",
    "RestoreSettings",
    "Restorer",
    "StateDictMismatchError",
    "SwinIR",
    "SwinIRConfig",
    "SwinIRError",
    "UsageError",
    "__version__",
    "detect_config",
    "load_model",
    "load_registry",
    "load_restorer",
    "read_image",
    "read_state_dict",
    "write_image",
]
