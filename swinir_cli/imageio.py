"""Reading and writing images faithfully: bit depth, alpha, orientation and metadata survive the trip.

Pixel layout used throughout swinir-cli:

* ``pixels`` is always a 3-D array ``H x W x C`` with ``C == 1`` (grayscale) or ``C == 3`` (RGB order),
  dtype ``uint8`` (values 0..255) or ``uint16`` (0..65535). Grayscale keeps its channel axis so that
  every image has the same rank; ``pixels[..., 0]`` is what ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``
  returns for a gray file, and for an 8-bit colour file ``pixels`` equals
  ``cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]`` (the authors' test script reads images that way).
* ``alpha`` is ``None`` or an ``H x W`` array of the same dtype as ``pixels`` (straight, not premultiplied).

Reading (:func:`read_image`) decodes with Pillow, except 16-bit colour PNG/TIFF, which Pillow can only
give as 8 bits and which OpenCV decodes instead, so that 16-bit data never passes through 8 bits.
Conversions: 1-bit -> gray 0/255; palette -> RGB (RGBA when it has transparency); a ``tRNS`` colour key
-> alpha; CMYK -> RGB through its ICC profile when it has one (the profile becomes sRGB), else Pillow's
plain formula; YCbCr/RGBX/premultiplied modes -> RGB(A); 32-bit integer gray -> uint16 when its values
fit. Float and other exotic modes are refused. Multi-frame files (GIF, APNG, multi-page TIFF) give their
first frame. The EXIF orientation is applied to the pixels exactly once and reset to 1 in the kept EXIF.

Writing (:func:`write_image`, :func:`encode_image`) follows the format table (:mod:`swinir_cli.formats`),
which states what each format keeps. 16 bits stay 16 bits where the format holds them (PNG, TIFF; 16-bit
gray+alpha TIFF is stored as RGBA, since neither Pillow nor OpenCV reads it otherwise), else become
``round(v / 257)``; alpha is dropped (no compositing onto a background) where the format has none; gray
is replicated to RGB where the format stores no gray. Metadata carried unless ``strip_metadata``, where
the format has a place for it: the ICC profile (only when its colour space still matches the output: an
RGB profile is dropped from a gray output and vice versa), EXIF (TIFF gets its descriptive tags: make,
model, date, artist, copyright, software, description), PNG text chunks, and swinir's own record of what
made an output (:attr:`ImageMetadata.provenance`: a PNG text chunk, a JPEG comment, WebP or TIFF XMP);
:func:`read_provenance` reads it back from a file's header alone.

Every failure is an :class:`~swinir_cli.errors.ImageError` whose one-line message names the file and
the reason. Pillow's warnings during a read (corrupt EXIF and the like) are not printed: they are
collected in :attr:`LoadedImage.warnings` for the caller to show.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageCms, PngImagePlugin, UnidentifiedImageError

from swinir_cli.durable import Replaces, atomic_file, remove_stale_temporaries, write_all
from swinir_cli.errors import ImageError, UsageError
from swinir_cli.formats import (
    DESCRIPTIVE_TIFF_TAGS,
    PNG_SIGNATURE,
    PROVENANCE_KEY,
    XMP_TAG,
    ImageMetadata,
    OutputFormat,
    encode,
    format_names,
    writable_format,
)
from swinir_cli.formats import to_8_bit as to_8_bit  # re-exported: pixel helpers beside to_gray
from swinir_cli.formats import to_colour as to_colour
from swinir_cli.provenance import ContentId
from swinir_cli.reading import FileTooLargeError, open_regular, read_within

# Pillow formats never opened: EPS runs Ghostscript on load; the others are identification-only stubs
# or need Windows.
_UNSAFE_OR_STUB_FORMATS = frozenset({"EPS", "BUFR", "GRIB", "HDF5", "MPEG", "WMF"})

_GRAY_MODES = frozenset({"1", "L", "LA", "La"})
_COLOUR_MODES = frozenset({"P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "YCbCr", "CMYK"})
_UINT16_GRAY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})

# What a decoder can raise on hostile bytes; each becomes an ImageError naming the file.
_DECODER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
    # Pillow's own consistency checks on hostile files: a palette PNG without PLTE fails an assert,
    # some DDS pixel formats raise NotImplementedError.
    AssertionError,
    NotImplementedError,
    # The AVIF plugin reports undecodable data as RuntimeError ("Failed to decode image: ...").
    RuntimeError,
    cv2.error,
    Image.DecompressionBombError,
)

_ORIENTATION_TAG = 0x0112
_SIGNATURES = (
    (PNG_SIGNATURE, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)

# Pillow's pixel limit is a process-wide setting; reads swap it (and capture warnings) under this lock.
_PILLOW_LOCK = threading.Lock()


class _PillowLimit:
    """Sentinel for ``max_pixels``: use Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89.5 megapixels)."""

    def __repr__(self) -> str:
        return "PILLOW_LIMIT"


PILLOW_LIMIT = _PillowLimit()


def _readable_formats() -> list[str]:
    Image.init()
    return sorted(set(Image.OPEN) - _UNSAFE_OR_STUB_FORMATS)


IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    extension
    for extension, fmt in Image.registered_extensions().items()
    if fmt in Image.OPEN and fmt not in _UNSAFE_OR_STUB_FORMATS
)
"""Lower-case file suffixes (with the dot) of every format :func:`read_image` opens."""


def is_probably_image(path: Path) -> bool:
    """Cheap test by suffix (no file access) used to skip non-image files found in directories."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """An image in memory. See the module docstring for the layout of ``pixels`` and ``alpha``.

    ``format`` is the Pillow name of the source format (``"PNG"``, ``"JPEG"``...) or None for an image
    made in memory; ``name`` is used in messages; ``warnings`` holds what the decoder complained about
    without failing; ``jpeg_quantization`` holds a JPEG source's quantization tables (for estimating the
    quality it was saved at), None for other sources; ``frames`` counts the source's frames or pages (an
    animated GIF or PNG, a multi-page TIFF), of which ``pixels`` holds the first; ``content`` identifies the
    bytes it was decoded from (size and sha256), None for an image made in memory.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    format: str | None = None
    metadata: ImageMetadata = dataclasses.field(default_factory=ImageMetadata)
    name: str = "<image>"
    warnings: tuple[str, ...] = ()
    jpeg_quantization: tuple[tuple[int, ...], ...] | None = None
    frames: int = 1
    content: ContentId | None = None

    def __post_init__(self) -> None:
        pixels = self.pixels
        if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or pixels.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"pixels must be HxWx1 or HxWx3 uint8/uint16, got {pixels.shape} {pixels.dtype}")
        if self.alpha is not None and (
            self.alpha.shape != pixels.shape[:2] or self.alpha.dtype != pixels.dtype
        ):
            raise ValueError(f"alpha must be {pixels.shape[:2]} {pixels.dtype}, got {self.alpha.shape}")

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        """1 for grayscale, 3 for RGB (alpha not counted)."""
        return int(self.pixels.shape[2])

    @property
    def is_gray(self) -> bool:
        return self.channels == 1

    @property
    def bit_depth(self) -> int:
        """8 or 16: bits per sample of ``pixels`` (and ``alpha``)."""
        return 16 if self.pixels.dtype == np.uint16 else 8


# --------------------------------------------------------------------------------------------------
# Reading


def read_image(
    source: Path | str | bytes,
    *,
    name: str | None = None,
    max_pixels: int | _PillowLimit | None = PILLOW_LIMIT,
) -> LoadedImage:
    """Decode an image file (or its bytes) into a :class:`LoadedImage`.

    ``name`` labels the image in messages (default: the path, or ``<stdin>`` for bytes).
    ``max_pixels`` refuses images with more pixels than this, judged from the header before any pixel
    memory is allocated: ``PILLOW_LIMIT`` (default) uses Pillow's limit, None disables the check.

    A path is opened without blocking and must be a regular file (a FIFO, device, socket or directory,
    also behind a symlink, is refused at once; see :mod:`swinir_cli.reading`). The decoder reads from the
    open file only what it needs, and never past :func:`encoded_bytes_limit` of the image's pixels (its
    header: of none), so a tail appended to an image is never read and a large file that is not an image
    is never loaded into memory.

    Raises ImageError for an unreadable source (missing, not a regular file, permissions), an empty file,
    contents no reader recognises, corrupt or truncated data, too many pixels and unsupported modes.
    """
    limit = _pixel_limit(max_pixels)
    if isinstance(source, bytes):
        return _decode_stream(io.BytesIO(source), len(source), name or "<stdin>", limit)
    label = name or str(source)
    try:
        with open_regular(Path(source)) as stream:
            return _decode_stream(stream, os.fstat(stream.fileno()).st_size, label, limit)
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({_os_reason(exc)})") from exc


def read_image_stream(
    stream: BinaryIO, *, name: str = "<stdin>", max_pixels: int | _PillowLimit | None = PILLOW_LIMIT
) -> LoadedImage:
    """Decode the image a stream holds (standard input), reading at most :func:`encoded_bytes_limit` of
    ``max_pixels`` bytes from it: more is refused, since no image within the pixel limit needs it.

    Raises ImageError as :func:`read_image` does, and for a stream longer than that bound.
    """
    limit = _pixel_limit(max_pixels)
    max_bytes = encoded_bytes_limit(limit)
    try:
        data = read_within(stream, max_bytes, name)
    except FileTooLargeError as exc:
        raise ImageError(
            f"{name}: {exc.strerror}, more than an image within the limit of {limit} pixels can take "
            "(--max-pixels raises the limit)"
        ) from exc
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({_os_reason(exc)})") from exc
    return read_image(data, name=name, max_pixels=limit)


#: Bytes an encoded image may take per pixel: the largest raw pixel (16-bit RGBA, 8 bytes) three times
#: over, since text formats (PPM ``P3``) spend up to 18 bytes on a 16-bit RGB pixel.
ENCODED_BYTES_PER_PIXEL = 24
#: Bytes an encoded image may take beyond its pixels: metadata (a JPEG's ICC profile alone may take 16 MiB),
#: thumbnails; data appended after the image (a motion photo's video) is never read from a file.
ENCODED_EXTRA_BYTES = 32 << 20


def encoded_bytes_limit(pixels: int | None) -> int | None:
    """The most bytes a decoder reads for an image of ``pixels`` pixels (None: no bound)."""
    return None if pixels is None else ENCODED_EXTRA_BYTES + ENCODED_BYTES_PER_PIXEL * pixels


def _pixel_limit(max_pixels: int | _PillowLimit | None) -> int | None:
    return pillow_pixel_limit() if isinstance(max_pixels, _PillowLimit) else max_pixels


def pillow_pixel_limit() -> int | None:
    """Pillow's ``Image.MAX_IMAGE_PIXELS`` as this process set it (None: no limit).

    Reads swap Pillow's limit off while they decode (see :func:`_pillow_reading`); this takes the same
    lock, so a thread reading an image at the same time never makes the limit look absent.
    """
    with _PILLOW_LOCK:
        return Image.MAX_IMAGE_PIXELS


@contextlib.contextmanager
def _pillow_reading(caught: list[warnings.WarningMessage]) -> Iterator[None]:
    """Hold the Pillow lock with its own pixel limit off (this module applies it as an error) and
    collect the warnings Pillow gives into ``caught``."""
    with _PILLOW_LOCK, warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        saved_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit
            caught.extend(recorded)


class _CappedReader(io.RawIOBase):
    """A seekable binary stream of ``size`` bytes read no further than :attr:`cap` (what an image's
    header can take, until :meth:`fit` says how large the image is): past it, reads give end-of-file and
    :attr:`hit` records that a decoder wanted more."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        super().__init__()
        self._stream = stream
        self._size = size
        self.cap = encoded_bytes_limit(0)
        self.bounded_by = "more than an image's header can take"
        self.hit = False

    def fit(self, width: int, height: int) -> None:
        """Let the decoder read what an image of ``width`` x ``height`` can need."""
        self.cap = encoded_bytes_limit(width * height)
        self.bounded_by = f"more than a {width}x{height} image can take"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def readinto(self, buffer: memoryview) -> int:
        view = memoryview(buffer).cast("B")
        wanted = len(view)
        if self.cap is not None and self.cap < self._size:
            allowed = max(self.cap - self._stream.tell(), 0)
            if wanted > allowed:
                self.hit, wanted = True, allowed
        data = self._stream.read(wanted)
        view[: len(data)] = data
        return len(data)


#: Read-ahead of the stream a decoder reads (Pillow reads PNG chunks and JPEG markers a few bytes at a time).
_DECODER_BUFFER_BYTES = 1 << 16


def _decode_stream(stream: BinaryIO, size: int, label: str, limit: int | None) -> LoadedImage:
    """Decode the image ``stream`` (``size`` bytes, seekable) holds, its warnings collected."""
    if size == 0:
        raise ImageError(f"{label}: empty file")
    caught: list[warnings.WarningMessage] = []
    capped = _CappedReader(stream, size)
    with _pillow_reading(caught):
        image = _decode(io.BufferedReader(capped, _DECODER_BUFFER_BYTES), capped, label, limit)
    warned = tuple(_one_line(w.message) for w in caught)
    return dataclasses.replace(image, warnings=warned, content=ContentId.of_stream(stream))


@contextlib.contextmanager
def _decoder_errors(label: str, prefix: bytes, capped: _CappedReader) -> Iterator[None]:
    """Turn what Pillow and OpenCV raise on hostile bytes into an :class:`ImageError` naming the file;
    a failure after the decoder was stopped at its byte bound says so."""
    try:
        yield
    except (UnidentifiedImageError, *_DECODER_ERRORS) as exc:
        if capped.hit:
            raise ImageError(
                f"{label}: decoding it needs more than {capped.cap} bytes, {capped.bounded_by}; refused"
            ) from exc
        if not isinstance(exc, UnidentifiedImageError):
            raise ImageError(f"{label}: corrupt or truncated image data ({_one_line(exc)})") from exc
        claimed = _claimed_format(prefix)
        if claimed is not None:
            raise ImageError(f"{label}: corrupt or truncated {claimed} header") from exc
        raise ImageError(f"{label}: not an image (no image format recognises its contents)") from exc


def _decode(stream: BinaryIO, capped: _CappedReader, label: str, limit: int | None) -> LoadedImage:
    """Decode ``stream`` (read through ``capped``, whose bound is fitted to the image once its size is
    known)."""
    prefix = stream.read(16)
    stream.seek(0)
    with (
        _decoder_errors(label, prefix, capped),
        Image.open(stream, formats=_readable_formats()) as opened,
    ):
        _check_size(opened.size, limit, label)
        capped.fit(*opened.size)
        pixels, alpha = _decode_pixels(opened, stream, label)
        orientation, metadata = _read_metadata(opened)
        if opened.mode == "CMYK":
            metadata = dataclasses.replace(
                metadata, icc_profile=_srgb_profile() if metadata.icc_profile else None
            )
        source_format = opened.format
        quantization = _quantization_tables(opened)
        frames = int(getattr(opened, "n_frames", 1))
    pixels, alpha = _apply_orientation(pixels, alpha, orientation)
    return LoadedImage(
        pixels=pixels,
        alpha=alpha,
        format=source_format,
        metadata=metadata,
        name=label,
        jpeg_quantization=quantization,
        frames=frames,
    )


def _quantization_tables(opened: Image.Image) -> tuple[tuple[int, ...], ...] | None:
    """A JPEG's quantization tables in table order (64 values each, natural order); None otherwise."""
    tables = getattr(opened, "quantization", None) if opened.format == "JPEG" else None
    return tuple(tuple(int(v) for v in tables[key]) for key in sorted(tables)) if tables else None


def _claimed_format(data: bytes) -> str | None:
    """The format a file's signature announces, for files whose header then fails to parse."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return "WebP" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _check_size(size: tuple[int, int], limit: int | None, label: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{label}: corrupt image header (size {width}x{height})")
    if limit is not None and width * height > limit:
        raise ImageError(
            f"{label}: {width}x{height} = {width * height} pixels exceeds the limit of {limit} "
            "(possible decompression bomb; --max-pixels N raises the limit)"
        )


def _decode_pixels(opened: Image.Image, stream: BinaryIO, label: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Pixels (HxWxC) and alpha (HxW or None) of the first frame, before orientation (``stream``: the
    file ``opened`` reads)."""
    rawmode = _raw_mode(opened)  # read before load(), which clears the tile list
    opened.load()  # decodes (and so validates) every byte first, whichever decoder delivers the pixels
    mode = opened.mode
    if mode in ("RGB", "RGBA") and ";16" in rawmode:  # Pillow has reduced 16-bit colour to 8 bits
        stream.seek(0)
        return _decode_16_bit_colour(stream.read(), gray=rawmode.startswith("LA"), label=label)
    if mode in _UINT16_GRAY_MODES or mode == "I":
        return _uint16_gray(opened, label)
    if mode == "CMYK":
        opened = _cmyk_to_rgb(opened)
    elif mode not in _GRAY_MODES | _COLOUR_MODES:
        raise ImageError(f"{label}: unsupported pixel mode {mode!r}")
    gray = mode in _GRAY_MODES
    with_alpha = opened.has_transparency_data
    target = ("LA" if gray else "RGBA") if with_alpha else ("L" if gray else "RGB")
    array = np.asarray(opened.convert(target))
    if array.ndim == 2:
        return array[..., None], None
    if not with_alpha:
        return array, None
    return np.ascontiguousarray(array[..., :-1]), np.ascontiguousarray(array[..., -1])


def _raw_mode(opened: Image.Image) -> str:
    """The decoder's raw mode (e.g. ``RGB;16B``) of the first tile, or "" when there is none."""
    if not opened.tile:
        return ""
    args = opened.tile[0].args
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return rawmode if isinstance(rawmode, str) else ""


def _decode_16_bit_colour(data: bytes, *, gray: bool, label: str) -> tuple[np.ndarray, np.ndarray | None]:
    """16-bit RGB(A) or gray+alpha through OpenCV (Pillow has no 16-bit colour modes)."""
    previous_level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(previous_level)
    if decoded is None or decoded.dtype != np.uint16 or decoded.ndim != 3:
        raise ImageError(f"{label}: 16-bit colour image data could not be decoded")
    if gray:  # OpenCV gives gray+alpha as BGRA with three equal colour channels
        return np.ascontiguousarray(decoded[..., :1]), np.ascontiguousarray(decoded[..., -1])
    colour = np.ascontiguousarray(decoded[..., 2::-1])
    return colour, np.ascontiguousarray(decoded[..., 3]) if decoded.shape[2] == 4 else None


def _uint16_gray(opened: Image.Image, label: str) -> tuple[np.ndarray, np.ndarray | None]:
    values = np.asarray(opened)
    if opened.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageError(f"{label}: unsupported pixel mode 'I' (32-bit values outside 0..65535)")
    gray = values.astype(np.uint16)
    key = opened.info.get("transparency")
    alpha = np.where(gray == key, 0, 65535).astype(np.uint16) if isinstance(key, int) else None
    return gray[..., None], alpha


def _cmyk_to_rgb(opened: Image.Image) -> Image.Image:
    icc = opened.info.get("icc_profile")
    if icc:
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                opened, source_profile, _srgb_cms_profile(), outputMode="RGB"
            )
        except ImageCms.PyCMSError as exc:
            warnings.warn(f"CMYK ICC profile unusable ({_one_line(exc)}); converted without it", stacklevel=2)
        else:
            assert converted is not None  # profileToProfile returns an image unless inPlace=True
            return converted
    return opened.convert("RGB")


def _srgb_cms_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _srgb_profile() -> bytes:
    return _srgb_cms_profile().tobytes()


def _read_metadata(opened: Image.Image) -> tuple[int, ImageMetadata]:
    """The EXIF orientation (1..8) and the metadata to carry over (EXIF orientation reset to 1)."""
    icc = opened.info.get("icc_profile") or None
    text = dict(opened.text) if isinstance(opened, PngImagePlugin.PngImageFile) else {}
    text.pop(PROVENANCE_KEY, None)  # the input's own record: not the output's
    try:
        exif = opened.getexif()
        orientation = exif.get(_ORIENTATION_TAG, 1)
        if opened.format == "TIFF":  # a TIFF's "EXIF" is its own IFD: keep only the descriptive tags
            exif = _descriptive_exif(exif)
        if _ORIENTATION_TAG in exif:
            exif[_ORIENTATION_TAG] = 1
        exif_bytes = exif.tobytes() if len(exif) else None
    except _DECODER_ERRORS as exc:
        warnings.warn(f"EXIF data unreadable, ignored ({_one_line(exc)})", stacklevel=2)
        orientation, exif_bytes = 1, None
    if orientation not in range(1, 9):
        warnings.warn(f"EXIF orientation {orientation!r} is invalid, ignored", stacklevel=2)
        orientation = 1
    return orientation, ImageMetadata(
        icc_profile=icc, exif=exif_bytes, png_text={str(k): str(v) for k, v in text.items()}
    )


def _descriptive_exif(exif: Image.Exif) -> Image.Exif:
    kept = Image.Exif()
    for tag in DESCRIPTIVE_TIFF_TAGS:
        if isinstance(exif.get(tag), str):
            kept[tag] = exif[tag]
    return kept


def _apply_orientation(
    pixels: np.ndarray, alpha: np.ndarray | None, orientation: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Turn stored pixels upright per EXIF orientation 1..8 (same result as ``ImageOps.exif_transpose``)."""
    if orientation == 1:
        return pixels, alpha

    def upright(array: np.ndarray) -> np.ndarray:
        transforms = {
            2: lambda a: a[:, ::-1],
            3: lambda a: a[::-1, ::-1],
            4: lambda a: a[::-1],
            5: lambda a: a.swapaxes(0, 1),
            6: lambda a: a.swapaxes(0, 1)[:, ::-1],
            7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
            8: lambda a: a.swapaxes(0, 1)[::-1],
        }
        return np.ascontiguousarray(transforms[orientation](array))

    return upright(pixels), None if alpha is None else upright(alpha)


# --------------------------------------------------------------------------------------------------
# Colour helpers


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 RGB (uint8/uint16) -> HxWx1 luma, exactly ``cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)``.

    This is BT.601 (0.299 R + 0.587 G + 0.114 B) in OpenCV's fixed point. ``cv2.imread(...,
    IMREAD_GRAYSCALE)`` on a colour file can differ: for PNG libpng's own conversion is up to one level
    off, and for JPEG libjpeg returns the stored luma plane. HxWx1 input is returned unchanged.
    """
    if pixels.shape[2] == 1:
        return pixels
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)[..., None]


# --------------------------------------------------------------------------------------------------
# Writing


def output_format(path: Path, format: str | None = None) -> OutputFormat:
    """The format to write (:data:`~swinir_cli.formats.FORMATS`): the one ``format`` names when given
    (``jpg``, ``tif`` accepted), else the one the suffix of ``path`` names. Raises ImageError when it is
    unknown or cannot be written."""
    name = format
    if name is None:
        name = Image.registered_extensions().get(path.suffix.lower())
        if name is None:
            raise ImageError(f"{path}: cannot tell the image format from the suffix {path.suffix!r}")
    fmt = writable_format(name)
    if fmt is None:
        raise ImageError(
            f"{path}: swinir does not write {name.upper()} images (it writes {'|'.join(format_names())})"
        )
    return fmt


def write_image(
    path: Path,
    image: LoadedImage,
    *,
    format: str | None = None,
    quality: int | None = None,
    strip_metadata: bool = False,
    replaces: Replaces = "any",
) -> None:
    """Write ``image`` to ``path`` atomically (:func:`swinir_cli.durable.atomic_file`): encoded in memory,
    written whole into a hidden temporary file in the same folder (``.NAME.<pid>-<12 hex>.tmp``, ``NAME``
    shortened when the output name is near the 255-byte limit), flushed to disk, then published as
    ``path``; on any failure the temporary file is removed. Temporary files of that pattern left for
    ``path`` by a process that is gone are removed first
    (:func:`swinir_cli.durable.remove_stale_temporaries`); those of a live writer are left alone.

    ``replaces`` says what may be at ``path`` (:func:`swinir_cli.durable.publish`): ``"any"`` (the
    default) replaces whatever is there, None only writes a new file, and a
    :class:`~swinir_cli.durable.FileIdentity` replaces only that very file; a file another process wrote
    meanwhile is kept and this write fails.

    ``format`` defaults to the one the suffix names; ``quality`` (0..100) applies to the formats with a
    default quality (:attr:`~swinir_cli.formats.OutputFormat.quality`: JPEG 95, WebP 95 where 100 means
    lossless, AVIF 90) and is ignored by other formats. See the module docstring for how depth, alpha,
    gray and metadata are stored. Raises ImageError (unwritable or full location, a short write,
    unsupported format, a file written meanwhile) naming ``path``; UsageError for a quality outside 0..100.
    """
    path = Path(path)
    fmt = output_format(path, format)
    try:
        remove_stale_temporaries(path)
    except OSError as exc:
        stale = Path(exc.filename).name
        raise ImageError(
            f"{path}: cannot remove the stale temporary file {stale} ({_os_reason(exc)})"
        ) from exc
    try:
        with atomic_file(path, replaces=replaces) as stream:
            write_all(stream, _encode(image, fmt, quality, strip_metadata, str(path)))
    except FileExistsError as exc:
        raise ImageError(
            f"{path}: another process wrote this file meanwhile; it is kept and this result was not "
            "written (run again to resume)"
        ) from exc
    except OSError as exc:
        raise ImageError(f"{path}: cannot write ({_os_reason(exc)})") from exc


def encode_image(
    image: LoadedImage, format: str, *, quality: int | None = None, strip_metadata: bool = False
) -> bytes:
    """The bytes :func:`write_image` would write in ``format`` (for standard output)."""
    fmt = output_format(Path("<stdout>"), format)
    try:
        return _encode(image, fmt, quality, strip_metadata, "<stdout>")
    except OSError as exc:
        raise ImageError(f"<stdout>: cannot encode {fmt.name} ({_os_reason(exc)})") from exc


def _encode(
    image: LoadedImage, fmt: OutputFormat, quality: int | None, strip_metadata: bool, label: str
) -> bytes:
    """``image`` in ``fmt`` (:func:`swinir_cli.formats.encode`), its metadata as the output carries it.

    Raises UsageError for a quality outside 0..100, ImageError for what the encoder refuses, OSError from
    the encoder.
    """
    if quality is not None and not 0 <= quality <= 100:
        raise UsageError(f"quality {quality} is outside 0..100")
    metadata = _metadata_for_output(ImageMetadata() if strip_metadata else image.metadata, image.channels)
    try:
        return encode(fmt, image.pixels, image.alpha, metadata, quality)
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"{label}: cannot encode {fmt.name} ({_one_line(exc)})") from exc


def _metadata_for_output(metadata: ImageMetadata, channels: int) -> ImageMetadata:
    """Drop an ICC profile whose colour space no longer matches the pixels (e.g. RGB profile, gray image)."""
    expected = "GRAY" if channels == 1 else "RGB"
    if metadata.icc_profile is not None and metadata.icc_colour_space() != expected:
        return dataclasses.replace(metadata, icc_profile=None)
    return metadata


# --------------------------------------------------------------------------------------------------
# Provenance: written by the encoders of swinir_cli.formats, read back from the header of an existing output

#: The most bytes :func:`read_provenance` reads (headers, and the one record it keeps), and the most
#: chunks, segments or directory entries it steps over.
_PROVENANCE_READ_LIMIT = 1 << 20
_PROVENANCE_STEP_LIMIT = 4096
_XMP_PROPERTY = re.compile(rb'swinir:provenance="([^"]*)"')


def carries_provenance(fmt: OutputFormat) -> bool:
    """Whether :func:`write_image` records the provenance in ``fmt`` (PNG, JPEG, WebP, TIFF); other formats
    (BMP, GIF, PPM, TGA, AVIF, ...) have no place swinir writes it to."""
    return fmt.provenance is not None


def _provenance_in_xmp(packet: bytes) -> str | None:
    match = _XMP_PROPERTY.search(packet)
    return None if match is None else html.unescape(match[1].decode("utf-8", "replace"))


def read_provenance(path: Path) -> str | None:
    """The provenance text swinir recorded in the image file at ``path``; None when it has none, is not a
    regular file, cannot be read, or is in a format without provenance.

    Reads the header only: chunks, segments and directory entries are stepped over by their lengths, at
    most :data:`_PROVENANCE_STEP_LIMIT` of them and :data:`_PROVENANCE_READ_LIMIT` bytes in all; the file
    is opened without blocking (a FIFO is never waited on).
    """
    try:
        with open_regular(path) as stream:
            reader = _HeaderReader(stream)
            find = _PROVENANCE_READERS.get(_claimed_format(reader.read(16)) or "")
            return None if find is None else find(reader)
    except (OSError, ValueError, struct.error):
        return None


class _HeaderReader:
    """Reads and seeks within a budget: raises ValueError past :data:`_PROVENANCE_READ_LIMIT` bytes
    read, :data:`_PROVENANCE_STEP_LIMIT` steps, or at the end of the file."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.budget = _PROVENANCE_READ_LIMIT
        self.steps = _PROVENANCE_STEP_LIMIT

    def read(self, count: int) -> bytes:
        if count > self.budget:
            raise ValueError("over the provenance read limit")
        self.budget -= count
        data = self.stream.read(count)
        if len(data) != count:
            raise ValueError("truncated")
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise ValueError("too many steps")
        self.stream.seek(offset, whence)


def _png_provenance(reader: _HeaderReader) -> str | None:
    """From a ``tEXt``/``iTXt`` chunk keyed :data:`PROVENANCE_KEY` before the first ``IDAT``."""
    key = PROVENANCE_KEY.encode("latin-1") + b"\0"
    reader.seek(len(PNG_SIGNATURE))
    while True:
        length, kind = struct.unpack(">I4s", reader.read(8))
        if kind in (b"IDAT", b"IEND"):
            return None
        if kind in (b"tEXt", b"iTXt") and length <= _PROVENANCE_READ_LIMIT // 2:
            payload = reader.read(length)
            reader.seek(4, os.SEEK_CUR)  # the CRC
            if payload.startswith(key):
                value = payload[len(key) :]
                if kind == b"iTXt":  # compression flag and method, language tag, translated keyword
                    flag, _, rest = value[0], value[1], value[2:]
                    if flag:
                        return None  # swinir's record is never compressed
                    value = rest.split(b"\0", 2)[-1]
                return value.decode("utf-8" if kind == b"iTXt" else "latin-1")
        else:
            reader.seek(length + 4, os.SEEK_CUR)


def _jpeg_provenance(reader: _HeaderReader) -> str | None:
    """From a ``COM`` segment holding a provenance record, before the first ``SOS``."""
    reader.seek(2)
    while True:
        marker, kind = reader.read(2)
        if marker != 0xFF:
            return None
        if kind == 0xFF:  # fill byte
            reader.seek(-1, os.SEEK_CUR)
            continue
        if kind == 0xDA or 0xD0 <= kind <= 0xD9:  # start of scan, restart or end markers: no more headers
            return None
        (length,) = struct.unpack(">H", reader.read(2))
        if kind == 0xFE:
            text = reader.read(length - 2).decode("utf-8", "replace")
            if text.startswith("{") and '"swinir"' in text:
                return text
        else:
            reader.seek(length - 2, os.SEEK_CUR)


def _webp_provenance(reader: _HeaderReader) -> str | None:
    """From the ``XMP `` chunk of an extended WebP (RIFF chunks stepped over by their sizes)."""
    reader.seek(12)  # "RIFF", the size, "WEBP"
    while True:
        try:
            kind, size = struct.unpack("<4sI", reader.read(8))
        except ValueError:
            return None  # the end of the file: no XMP chunk
        if kind == b"XMP ":
            return _provenance_in_xmp(reader.read(size))
        reader.seek(size + (size & 1), os.SEEK_CUR)


def _tiff_provenance(reader: _HeaderReader) -> str | None:
    """From the XMP tag (700) of the first image directory of a classic TIFF."""
    reader.seek(0)
    order = "<" if reader.read(2) == b"II" else ">"
    magic, offset = struct.unpack(order + "HI", reader.read(6))
    if magic != 42:
        return None
    reader.seek(offset)
    (entries,) = struct.unpack(order + "H", reader.read(2))
    for _ in range(min(entries, _PROVENANCE_STEP_LIMIT)):
        tag, kind, count, value = struct.unpack(order + "HHII", reader.read(12))
        if tag == XMP_TAG and kind in (1, 7):  # BYTE or UNDEFINED
            if count <= 4:
                return None  # far too short for a record
            reader.seek(value)
            return _provenance_in_xmp(reader.read(count))
    return None


# By the format a file's signature announces (:func:`_claimed_format`).
_PROVENANCE_READERS = {
    "PNG": _png_provenance,
    "JPEG": _jpeg_provenance,
    "TIFF": _tiff_provenance,
    "WebP": _webp_provenance,
}


# --------------------------------------------------------------------------------------------------
# Messages


def _one_line(message: object) -> str:
    text = " ".join(str(message).split())
    return text or type(message).__name__


def _os_reason(exc: OSError) -> str:
    """The OS's reason, its first letter lower-cased to follow a colon ("is a FIFO" keeps its capitals)."""
    return exc.strerror[:1].lower() + exc.strerror[1:] if exc.strerror else _one_line(exc)
