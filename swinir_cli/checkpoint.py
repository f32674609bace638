"""Reading SwinIR checkpoints safely and inferring their architecture from tensor shapes.

The authors save ``torch.save({'params': state_dict})`` (real-world models also hold ``params_ema``, the one
to use). Files are read with ``torch.load(..., weights_only=True)`` or as safetensors: a pickle that would
import or run code is refused, never executed.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors

from .errors import CheckpointError, StateDictMismatchError
from .network import SwinIR, SwinIRConfig

__all__ = ["DERIVED_BUFFERS", "detect_config", "load_model", "model_from_state_dict", "read_state_dict"]

#: Buffers of the authors' network that follow from the config (and, for ``attn_mask``, from the training
#: patch size); ignored when a file has them.
DERIVED_BUFFERS = ("attn_mask", "relative_position_index")
#: Window size of the authors' JPEG models, the only ones trained with ``img_range = 255``.
JPEG_WINDOW = 7

#: Largest window a checkpoint may describe (the authors use 7 and 8): each block derives a
#: ``window**4``-entry index from it, allocated before any tensor is compared.
MAX_WINDOW = 32
#: Largest upscale factor a checkpoint may describe (the registry's limit too).
MAX_UPSCALE = 16
#: Most bytes the derived position indices of all blocks may take (the released models need 1.2 MB).
MAX_DERIVED_BYTES = 1 << 30

_BLOCK_KEY = re.compile(r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the tensors of a ``.pth`` or ``.safetensors`` checkpoint without running any code.

    From a ``.pth`` dict, ``params_ema`` is used when present, else ``params``, else the dict itself.

    Raises:
        CheckpointError: the file is missing, unreadable, not a checkpoint, or its pickle carries code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    if path.suffix == ".safetensors":
        try:
            return load_safetensors(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), _first_line(exc))
        raise CheckpointError(
            f"{path}: refused: the file's pickle would import or run code, so it was not loaded "
            f"({detail.strip()})"
        ) from None
    except Exception as exc:  # arbitrary bytes make the unpickler fail in arbitrary ways
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None
    if isinstance(data, Mapping):
        for key in ("params_ema", "params"):
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    _check_stored(data, path)
    return dict(data)


def _check_stored(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse tensors whose shape claims more values than their storage holds (a pickle can declare
    a 1-element storage with a huge shape and zero strides; copying it would allocate the whole shape)."""
    for name, tensor in state.items():
        stored = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1)
        if tensor.numel() > stored:
            raise CheckpointError(
                f"{path}: tensor {name!r} declares shape {tuple(tensor.shape)} ({tensor.numel()} values) "
                f"but stores only {stored}; refused"
            )


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _shape(state: Mapping[str, torch.Tensor], name: str, ndim: int | None = None) -> tuple[int, ...]:
    """The shape of tensor ``name``, checked to have ``ndim`` dimensions, all positive."""
    if name not in state:
        raise CheckpointError(f"not a SwinIR checkpoint: it has no tensor {name!r}")
    shape = tuple(state[name].shape)
    if (ndim is not None and len(shape) != ndim) or not shape or min(shape) <= 0:
        wanted = f"{ndim} positive dimensions" if ndim else "positive dimensions"
        raise CheckpointError(
            f"not a SwinIR checkpoint: tensor {name!r} has shape {shape}, expected {wanted}"
        )
    return shape


def _depths(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per residual group, from the tensor names; groups and blocks must be numbered 0, 1, 2..."""
    blocks: dict[int, set[int]] = {}
    for name in state:
        if match := _BLOCK_KEY.match(name):
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise CheckpointError(
            "not a SwinIR checkpoint: no consecutive residual groups 'layers.N.residual_group'"
        )
    for group, indices in blocks.items():
        if sorted(indices) != list(range(len(indices))):
            raise CheckpointError(
                f"not a SwinIR checkpoint: the blocks of group {group} are not numbered 0..N"
            )
    return tuple(len(blocks[i]) for i in sorted(blocks))


def _window(table_rows: list[int], depths: tuple[int, ...]) -> int:
    """The attention window whose ``(2w - 1)**2`` relative positions the bias tables hold."""
    window = (round(table_rows[0] ** 0.5) + 1) // 2
    if (2 * window - 1) ** 2 != table_rows[0] or any(rows != table_rows[0] for rows in table_rows):
        raise CheckpointError(f"not a SwinIR checkpoint: position bias tables of {table_rows} rows")
    derived_bytes = sum(depths) * window**4 * 8
    if window > MAX_WINDOW or derived_bytes > MAX_DERIVED_BYTES:
        raise CheckpointError(
            f"not a SwinIR checkpoint: window {window} over {sum(depths)} blocks would need "
            f"{derived_bytes / 2**30:.1f} GiB of position indices (at most window {MAX_WINDOW}, "
            f"{MAX_DERIVED_BYTES / 2**30:.0f} GiB); refused before allocating"
        )
    return window


def _check_size_against_file(
    state: Mapping[str, torch.Tensor], embed_dim: int, hidden: int, blocks: int
) -> None:
    """Refuse a network whose attention and MLP weights alone (``4E² + 2EH`` per block, a lower bound
    of its parameters) outnumber every value the file stores: building it would allocate memory the
    file cannot fill, possibly terabytes."""
    needed = blocks * (4 * embed_dim * embed_dim + 2 * embed_dim * hidden)
    stored = sum(tensor.numel() for tensor in state.values())
    if needed > stored:
        raise CheckpointError(
            f"not a SwinIR checkpoint: its shapes describe a network of at least {needed} parameters "
            f"but the file stores {stored} values; refused before allocating"
        )


def detect_config(state: Mapping[str, torch.Tensor], img_range: float | None = None) -> SwinIRConfig:
    """Infer a SwinIR network's hyper-parameters from the names and shapes of its tensors.

    ``img_range`` defaults to 255 for window-7 models (the authors' JPEG models) and 1 otherwise. Shapes
    are validated before anything is sized from them: every dimension positive, block numbering
    consecutive, the window at most :data:`MAX_WINDOW`, and the network no larger than the file.

    Raises:
        CheckpointError: the tensors are not those of a SwinIR network.
    """
    embed_dim, in_chans = _shape(state, "conv_first.weight", 4)[:2]
    depths = _depths(state)
    table_shapes = [
        _shape(state, f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table", 2)
        for i in range(len(depths))
    ]
    num_heads = tuple(shape[1] for shape in table_shapes)
    window = _window([shape[0] for shape in table_shapes], depths)
    hidden = _shape(state, "layers.0.residual_group.blocks.0.mlp.fc1.weight", 2)[0]
    _check_size_against_file(state, embed_dim, hidden, sum(depths))
    mlp_ratio = hidden / embed_dim
    resi_connection = "1conv" if "conv_after_body.weight" in state else "3conv"

    if "conv_up1.weight" in state:
        upsampler, upscale = "nearest+conv", 4 if "conv_up2.weight" in state else 2
    elif "conv_before_upsample.0.weight" in state:
        upsampler = "pixelshuffle"
        convs = [n for n in state if re.fullmatch(r"upsample\.\d+\.weight", n)]
        first_out = _shape(state, "upsample.0.weight", 4)[0] // _shape(state, "upsample.0.weight", 4)[1]
        upscale = 3 if first_out == 9 else 2 ** len(convs)
    elif "upsample.0.weight" in state:
        upsampler = "pixelshuffledirect"
        upscale = round((_shape(state, "upsample.0.weight", 4)[0] / in_chans) ** 0.5)
    else:
        upsampler, upscale = "", 1
    if upscale > MAX_UPSCALE:
        raise CheckpointError(
            f"not a SwinIR checkpoint: its upsampler scales by {upscale} (at most {MAX_UPSCALE})"
        )

    try:
        return SwinIRConfig(
            in_chans=in_chans,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window,
            mlp_ratio=int(mlp_ratio) if mlp_ratio.is_integer() else mlp_ratio,
            upscale=upscale,
            upsampler=upsampler,
            resi_connection=resi_connection,
            img_range=img_range if img_range is not None else (255.0 if window == JPEG_WINDOW else 1.0),
        )
    except ValueError as exc:
        raise CheckpointError(f"not a SwinIR checkpoint: {exc}") from None


def model_from_state_dict(
    state: Mapping[str, torch.Tensor], *, img_range: float | None = None, source: str = "state dict"
) -> SwinIR:
    """Build the network :func:`detect_config` infers and load every learnable tensor strictly.

    Raises:
        CheckpointError: the tensors are not those of a SwinIR network.
        StateDictMismatchError: a tensor is missing, unexpected, or of the wrong shape (all are named).
    """
    model = SwinIR(detect_config(state, img_range))
    wanted = model.state_dict()
    given = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in DERIVED_BUFFERS}
    missing = [k for k in wanted if k not in given]
    unexpected = [k for k in given if k not in wanted]
    mismatched = [
        (k, tuple(given[k].shape), tuple(wanted[k].shape))
        for k in wanted
        if k in given and given[k].shape != wanted[k].shape
    ]
    if missing or unexpected or mismatched:
        raise StateDictMismatchError(missing, unexpected, mismatched, source=source)
    model.load_state_dict(given, strict=True)
    return model.eval().requires_grad_(False)


def load_model(path: str | Path, *, img_range: float | None = None) -> SwinIR:
    """Load a SwinIR checkpoint (``.pth`` or ``.safetensors``) into a network ready for inference (CPU).

    Raises:
        CheckpointError, StateDictMismatchError: see :func:`read_state_dict` and
        :func:`model_from_state_dict`.
    """
    return model_from_state_dict(read_state_dict(path), img_range=img_range, source=str(path))
