"""swinir-cli: restore images with SwinIR (super-resolution, denoising, JPEG artifact removal).

The command line (``swinir``) is a thin layer over this API::

    from swinir_cli import Restorer
    restorer = Restorer.from_name("real-x4")            # or Restorer(load_model("file.pth"))
    restored = restorer.restore_pixels(pixels)          # (H, W, 3) uint8/uint16 -> (4H, 4W, 3)
"""

from ._version import __version__
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

__all__ = [
    "CheckpointError",
    "DownloadError",
    "ImageError",
    "LoadedImage",
    "ModelNotFoundError",
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
    "read_image",
    "read_state_dict",
    "write_image",
]
