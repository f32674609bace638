"""Reading SwinIR checkpoints safely and inferring their architecture from tensor shapes.

The authors save ``torch.save({'params': state_dict})`` (real-world models also hold ``params_ema``, the one
to use). Files are read with ``torch.load(..., weights_only=True)`` or as safetensors: a pickle that would
import or run code is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file as load_safetensors

from .errors import CheckpointError, StateDictMismatchError
from .network import SwinIR, SwinIRConfig
from .reading import open_regular
from .tasks import DEJPEG

__all__ = [
    "DERIVED_BUFFERS",
    "detect_config",
    "load_model",
    "model_from_state_dict",
    "read_config",
    "read_state_dict",
]

#: Buffers of the authors' network that follow from the config (and, for ``attn_mask``, from the training
#: patch size); ignored when a file has them.
DERIVED_BUFFERS = ("attn_mask", "relative_position_index")
#: Window size of the authors' JPEG models, the only ones trained with ``img_range = 255``.
JPEG_WINDOW = DEJPEG.window

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

    From a ``.pth`` dict, ``params_ema`` is used when present, else ``params``, else the dict itself. The
    file is opened without blocking and must be a regular file; its format is told by its contents. A
    ``.pth`` zip archive's records are checked against the file before any is read (torch.save stores
    them uncompressed, so none may be compressed or claim more bytes than the file holds). Only dense
    CPU floating-point tensors are accepted (integers too for :data:`DERIVED_BUFFERS`), each backed by
    the values it claims, and weights must be finite.

    Raises:
        CheckpointError: the file is missing, unreadable, not a checkpoint, its pickle carries code, or
            its tensors are not plain finite weights.
    """
    path = Path(path)
    try:
        stream = open_regular(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such weights file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the weights ({exc.strerror or exc})") from None
    with stream:
        try:
            state = _read_tensors(stream, os.fstat(stream.fileno()).st_size, path)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read the weights ({exc.strerror or exc})") from None
    _check_tensors(state, path)
    return state


#: What a file that is not a checkpoint may be, by its first bytes (after leading white space), for the
#: message that says so.
_OTHER_FORMATS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"<", "an HTML or XML page"),
)
_ZIP_SIGNATURE = b"PK\x03\x04"
#: A pickle of protocol 2 or later: what torch.save wrote before its zip format (PyTorch < 1.6).
_PICKLE_SIGNATURE = b"\x80"
#: The value types weights may have; :data:`DERIVED_BUFFERS` may also be integers.
FLOAT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
INTEGER_DTYPES = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})


def _read_tensors(stream: BinaryIO, size: int, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint ``stream`` (``size`` bytes) holds, as saved (unchecked)."""
    if size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    head = stream.read(16)
    stream.seek(0)
    if _looks_like_safetensors(head, size):  # first: its header length may begin with any byte
        return _load_safetensors(path)
    if head.startswith(_ZIP_SIGNATURE):
        _check_zip_records(stream, size, path)
        return _state_dict(_torch_load(stream, path), path)
    if head.startswith(_PICKLE_SIGNATURE):
        return _state_dict(_torch_load(stream, path), path)
    other = next((what for start, what in _OTHER_FORMATS if head.lstrip().startswith(start)), None)
    if other is None and path.suffix == ".safetensors":
        return _load_safetensors(path)  # its reader says what is wrong with it
    raise CheckpointError(
        f"{path}: {other + ', ' if other else ''}not a PyTorch .pth or .safetensors checkpoint"
    )


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, memory-mapped (the file was just checked to be a regular file)."""
    try:
        return load_safetensors(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then that much JSON in the file."""
    return len(head) > 8 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _check_zip_records(stream: BinaryIO, size: int, path: Path) -> None:
    """Refuse a zip archive whose records could make the reader allocate more than the file holds:
    a compressed record (a zip bomb; torch.save stores records as they are) or one that claims more
    bytes than the file has after its start, or records that together claim more than the file."""
    try:
        with zipfile.ZipFile(stream) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise CheckpointError(
            f"{path}: not a PyTorch .pth checkpoint (a damaged zip archive: {exc})"
        ) from None
    finally:
        stream.seek(0)
    claimed = 0
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"{path}: its record {record.filename!r} is compressed, which torch.save never does "
                f"(it would inflate to {record.file_size} bytes); refused before reading it"
            )
        if record.compress_size != record.file_size or record.header_offset + record.file_size > size:
            raise CheckpointError(
                f"{path}: its record {record.filename!r} claims {record.file_size} bytes, more than the "
                f"file of {size} bytes holds there; refused before reading it"
            )
        claimed += record.file_size
    if claimed > size:
        raise CheckpointError(
            f"{path}: its records claim {claimed} bytes, more than the file's {size}; "
            "refused before reading them"
        )


def _torch_load(stream: BinaryIO, path: Path) -> object:
    """``torch.load`` with ``weights_only``, on the CPU, its warnings silenced (this module checks what
    they warn of)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(stream, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), _first_line(exc))
        raise CheckpointError(
            f"{path}: refused: the file's pickle would import or run code, so it was not loaded "
            f"({detail.strip()})"
        ) from None
    except Exception as exc:  # arbitrary bytes make the unpickler fail in arbitrary ways
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None


def _state_dict(data: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded ``.pth``: ``params_ema``, else ``params``, else the dict itself."""
    if isinstance(data, Mapping):
        for key in ("params_ema", "params"):
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    return dict(data)


def _is_derived(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in DERIVED_BUFFERS


def _check_tensors(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse tensors that are not plain weights, then those not backed by the values they claim, then
    weights that are not finite (every result would be black or wrong), in that order: each check
    relies on the ones before it."""
    for name, tensor in state.items():
        problem = _tensor_kind_problem(tensor, integers_allowed=_is_derived(name))
        if problem is not None:
            raise CheckpointError(
                f"{path}: tensor {name!r} {problem}; only dense CPU floating-point tensors are weights"
            )
    _check_stored(state, path)
    for name, tensor in state.items():
        if not _is_derived(name) and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{path}: tensor {name!r} holds NaN or infinite values; refused, since every result "
                "would be black or wrong"
            )


def _tensor_kind_problem(tensor: torch.Tensor, *, integers_allowed: bool) -> str | None:
    """What makes ``tensor`` something other than a plain weight (None when it is one)."""
    if tensor.device.type != "cpu":
        return f"is on the {tensor.device.type} device, without values in the file"
    if tensor.is_nested:
        return "is a nested tensor"
    if tensor.layout != torch.strided:
        return f"is sparse ({str(tensor.layout).removeprefix('torch.')})"
    if tensor.is_quantized:
        return f"is quantized ({str(tensor.dtype).removeprefix('torch.')})"
    allowed = FLOAT_DTYPES | INTEGER_DTYPES if integers_allowed else FLOAT_DTYPES
    if tensor.dtype not in allowed:
        return f"holds {str(tensor.dtype).removeprefix('torch.')} values"
    return None


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


def _stored_values(state: Mapping[str, torch.Tensor]) -> int:
    """The values the tensors' storages hold, each storage counted once (tensors may share one); a tensor
    of shape alone (on the meta device: a safetensors header, whose sizes safetensors checks against the
    file) counts its elements."""
    storages: dict[int, int] = {}
    shapes_only = 0
    for tensor in state.values():
        if tensor.is_meta:
            shapes_only += tensor.numel()
            continue
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes() // max(tensor.element_size(), 1)
    return sum(storages.values()) + shapes_only


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
    stored = _stored_values(state)
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


def read_config(path: Path) -> SwinIRConfig:
    """The architecture a checkpoint file describes (:func:`detect_config` of its tensors' shapes).

    Of a safetensors file only the header is read; a ``.pth`` is read whole (:func:`read_state_dict`).

    Raises:
        CheckpointError: the file is not a readable SwinIR checkpoint.
    """
    return detect_config(_tensor_shapes(path))


def _tensor_shapes(weights: Path) -> Mapping[str, torch.Tensor]:
    """The checkpoint's tensors with their shapes and no data: a safetensors header is all that is read
    (a ``.pth``, served from a read-only cache, is read whole)."""
    if weights.suffix != ".safetensors":
        return read_state_dict(weights)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {
                name: torch.empty(handle.get_slice(name).get_shape(), device="meta")
                for name in handle.keys()  # noqa: SIM118 (a handle is not iterable)
            }
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None


def model_from_state_dict(
    state: Mapping[str, torch.Tensor], *, img_range: float | None = None, source: str = "state dict"
) -> SwinIR:
    """Build the network :func:`detect_config` infers and load every learnable tensor strictly.

    Raises:
        CheckpointError: the tensors are not those of a SwinIR network.
        StateDictMismatchError: a tensor is missing, unexpected, or of the wrong shape (all are named).
    """
    config = detect_config(state, img_range)
    with torch.device("meta"):  # names and shapes only: a mismatch is found before any memory is filled
        wanted = SwinIR(config).state_dict()
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
    model = SwinIR(config)
    model.load_state_dict(given, strict=True)
    return model.eval().requires_grad_(False)


def load_model(path: str | Path, *, img_range: float | None = None) -> SwinIR:
    """Load a SwinIR checkpoint (``.pth`` or ``.safetensors``) into a network ready for inference (CPU).

    Raises:
        CheckpointError, StateDictMismatchError: see :func:`read_state_dict` and
        :func:`model_from_state_dict`.
    """
    return model_from_state_dict(read_state_dict(path), img_range=img_range, source=str(path))
