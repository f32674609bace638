"""The formats swinir writes, one record each: what a format holds and how an image becomes its bytes.

:data:`FORMATS` is the one table. Each :class:`OutputFormat` states its ``--format`` words, whether it
keeps alpha, gray and 16 bits per sample, which metadata it carries (ICC profile, EXIF, swinir's
provenance record), its default quality, whether it holds at most 256 colours, and its encoder. The
``--format`` help, the loss warnings of a run (alpha dropped, 16 bits reduced, colours reduced) and
:func:`encode` are derived from it; :data:`DEFAULT_FORMAT` is the one default output format.

:func:`encode` reduces what the format cannot hold (16 bits -> ``round(v / 257)``, gray -> RGB,
alpha dropped without compositing) and calls the format's encoder: Pillow with the format's save
options, except 16-bit PNG and TIFF, which Pillow cannot write and which are built here, and 8-bit PNG,
whose pixel chunks OpenCV encodes faster. Files are written elsewhere (:mod:`swinir_cli.imageio`,
:mod:`swinir_cli.durable`); this module imports nothing from the rest of the project.
"""

from __future__ import annotations

import dataclasses
import html
import io
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping

import cv2
import numpy as np
from PIL import Image, PngImagePlugin, TiffImagePlugin, TiffTags

#: The PNG text key (and XMP property) that holds swinir's provenance record.
PROVENANCE_KEY = "swinir:provenance"
#: The TIFF tag of an XMP packet.
XMP_TAG = 700
#: EXIF tags that still describe the image after restoration; the only ones a TIFF output receives.
DESCRIPTIVE_TIFF_TAGS = (270, 271, 272, 305, 306, 315, 33432)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZLIB_LEVEL = 6
#: zlib level of the 8-bit PNG encoder (see :func:`_encode_png_8`).
_OPENCV_PNG_LEVEL = 3


@dataclasses.dataclass(frozen=True)
class ImageMetadata:
    """Metadata carried from input to output.

    ``icc_profile``: raw ICC bytes; ``exif``: serialised EXIF with the orientation already reset to 1;
    ``png_text``: PNG ``tEXt``/``zTXt``/``iTXt`` chunks as key -> text; ``provenance``: swinir's record of
    what made the image (:class:`~swinir_cli.provenance.Provenance` as text), written into outputs of the
    formats that carry it (:attr:`OutputFormat.provenance`) and never taken from an input.
    """

    icc_profile: bytes | None = None
    exif: bytes | None = None
    png_text: Mapping[str, str] = dataclasses.field(default_factory=dict)
    provenance: str | None = None

    def icc_colour_space(self) -> str | None:
        """The profile's data colour space from its header (``"RGB"``, ``"GRAY"``, ``"CMYK"``...)."""
        if self.icc_profile is None or len(self.icc_profile) < 20:
            return None
        return self.icc_profile[16:20].decode("ascii", "replace").strip()


#: An encoder: (format, pixels HxWxC, alpha HxW or None, metadata, quality) -> the file's bytes. It is
#: given only what the format holds (:func:`encode`).
Encoder = Callable[["OutputFormat", np.ndarray, "np.ndarray | None", ImageMetadata, "int | None"], bytes]
#: The Pillow save options a format adds for the metadata it carries in its own way (text chunks, tags).
OwnOptions = Callable[[ImageMetadata], dict[str, object]]


def _no_options(metadata: ImageMetadata) -> dict[str, object]:
    """No options of its own: the format carries no metadata in a place of its own."""
    return {}


def _encode_with_pillow(
    fmt: OutputFormat,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    metadata: ImageMetadata,
    quality: int | None,
) -> bytes:
    """Pillow's encoder of ``fmt``, given L, LA, RGB or RGBA and :meth:`OutputFormat.save_options`."""
    if alpha is None:
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    else:
        picture = Image.fromarray(np.dstack([pixels, alpha]))  # LA or RGBA
    stream = io.BytesIO()
    picture.save(stream, format=fmt.name, **fmt.save_options(metadata, quality))
    return stream.getvalue()


@dataclasses.dataclass(frozen=True)
class OutputFormat:
    """One format swinir writes.

    ``name``: Pillow's name (``"PNG"``), which also names the suffixes that mean it (Pillow's registered
    extensions, so that a file is read and written as the same format); ``words``: the ``--format``
    words that choose it, the first the one shown (any case is accepted, and so is ``name``);
    ``alpha``, ``gray``, ``deep``: whether it keeps alpha, a gray image as gray, and 16 bits per sample
    (else alpha is dropped, gray replicated to RGB, 16 bits reduced to 8); ``icc``, ``exif``: whether it
    carries the ICC profile and the whole EXIF block; ``provenance``: where swinir's provenance record
    goes, in words (None: the format has no place for it); ``quality``: the default of ``--output-quality``
    (None: the format has no quality); ``lossless_at_full_quality``: quality 100 means lossless;
    ``palette_only``: it holds at most 256 colours; ``own_options``: the Pillow save options of the
    metadata it carries in its own way; ``encoder``: makes the bytes (default: Pillow's encoder).
    """

    name: str
    words: tuple[str, ...]
    alpha: bool = False
    gray: bool = False
    deep: bool = False
    icc: bool = False
    exif: bool = False
    provenance: str | None = None
    quality: int | None = None
    lossless_at_full_quality: bool = False
    palette_only: bool = False
    own_options: OwnOptions = _no_options
    encoder: Encoder = _encode_with_pillow

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.upper():
            raise ValueError(f"a format's name is Pillow's upper-case name, not {self.name!r}")
        if not self.words or any(not word or word != word.lower() for word in self.words):
            raise ValueError(
                f"{self.name}: --format words must be lower-case and non-empty, not {self.words}"
            )
        if self.quality is not None and not 0 <= self.quality <= 100:
            raise ValueError(f"{self.name}: default quality {self.quality} is outside 0..100")
        if self.lossless_at_full_quality and self.quality is None:
            raise ValueError(f"{self.name}: lossless at quality 100 needs a quality")
        if self.deep and self.encoder is _encode_with_pillow:
            raise ValueError(
                f"{self.name}: Pillow writes no 16-bit colour; a deep format needs its own encoder"
            )

    @property
    def word(self) -> str:
        """The ``--format`` word shown for this format (``png``, ``jpg``...)."""
        return self.words[0]

    def save_options(self, metadata: ImageMetadata, quality: int | None) -> dict[str, object]:
        """Pillow's save options for ``metadata`` and ``quality`` (None: :attr:`quality`)."""
        options: dict[str, object] = {}
        if self.icc and metadata.icc_profile is not None:
            options["icc_profile"] = metadata.icc_profile
        if self.exif and metadata.exif is not None:
            options["exif"] = metadata.exif
        options.update(self.own_options(metadata))
        if self.quality is not None:
            chosen = self.quality if quality is None else quality
            options["quality"] = chosen
            if self.lossless_at_full_quality and chosen == 100:
                options["lossless"] = True
        return options


def encode(
    fmt: OutputFormat,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    metadata: ImageMetadata,
    quality: int | None,
) -> bytes:
    """``pixels`` and ``alpha`` (see :mod:`swinir_cli.imageio` for their layout) in ``fmt``, reduced to
    what it holds: 16 bits to 8 unless :attr:`~OutputFormat.deep`, gray to RGB unless
    :attr:`~OutputFormat.gray`, alpha dropped unless :attr:`~OutputFormat.alpha`.

    Raises ValueError, KeyError or TypeError from Pillow for what it cannot encode, OSError from the
    encoders.
    """
    if not fmt.deep:
        pixels, alpha = to_8_bit(pixels), None if alpha is None else to_8_bit(alpha)
    if not fmt.gray:
        pixels = to_colour(pixels)
    return fmt.encoder(fmt, pixels, alpha if fmt.alpha else None, metadata, quality)


def to_colour(pixels: np.ndarray) -> np.ndarray:
    """HxWx1 gray -> HxWx3 with the gray value in every channel; HxWx3 input is returned unchanged."""
    return pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)


def to_8_bit(values: np.ndarray) -> np.ndarray:
    """uint16 0..65535 -> uint8 ``round(v / 257)`` (halves round up); uint8 input is returned unchanged."""
    if values.dtype == np.uint8:
        return values
    return ((values.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Metadata in a format's own places


def _provenance_xmp(text: str) -> bytes:
    """An XMP packet whose only property is the provenance ``text`` (XML-escaped)."""
    value = html.escape(text, quote=True)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:swinir="urn:swinir-cli:1/" swinir:provenance="{value}"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="r"?>'
    ).encode()


def _png_options(metadata: ImageMetadata) -> dict[str, object]:
    """The PNG text chunks, and the provenance as one more keyed :data:`PROVENANCE_KEY`."""
    provenance = metadata.provenance
    if not metadata.png_text and provenance is None:
        return {}
    own = {} if provenance is None else {PROVENANCE_KEY: provenance}
    info = PngImagePlugin.PngInfo()
    for key, value in {**metadata.png_text, **own}.items():
        info.add_text(key, value)  # iTXt when the text is not Latin-1
    return {"pnginfo": info}


def _jpeg_options(metadata: ImageMetadata) -> dict[str, object]:
    """The provenance as a JPEG comment."""
    return {} if metadata.provenance is None else {"comment": metadata.provenance.encode("utf-8")}


def _webp_options(metadata: ImageMetadata) -> dict[str, object]:
    """The provenance as XMP."""
    return {} if metadata.provenance is None else {"xmp": _provenance_xmp(metadata.provenance)}


def _tiff_options(metadata: ImageMetadata) -> dict[str, object]:
    """Deflate compression, and the tags of :func:`_tiff_tags`."""
    return {"compression": "tiff_adobe_deflate", "tiffinfo": _tiff_tags(metadata)}


def _tiff_tags(metadata: ImageMetadata) -> dict[int, str | bytes]:
    """The descriptive tags of the EXIF (:data:`DESCRIPTIVE_TIFF_TAGS`), and the provenance as XMP."""
    tags: dict[int, str | bytes] = {**_tiff_descriptive_tags(metadata.exif)}
    if metadata.provenance is not None:
        tags[XMP_TAG] = _provenance_xmp(metadata.provenance)
    return tags


def _tiff_descriptive_tags(exif: bytes | None) -> dict[int, str]:
    if exif is None:
        return {}
    parsed = Image.Exif()
    parsed.load(exif)
    return {tag: parsed[tag] for tag in DESCRIPTIVE_TIFF_TAGS if isinstance(parsed.get(tag), str)}


# --------------------------------------------------------------------------------------------------
# PNG and TIFF encoders


def _encode_png(
    fmt: OutputFormat,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    metadata: ImageMetadata,
    quality: int | None,
) -> bytes:
    """16 bits: :func:`_encode_png_16`; 8 bits: :func:`_encode_png_8`, but gray+alpha, which OpenCV does
    not write, through Pillow."""
    if pixels.dtype == np.uint16:
        return _encode_png_16(pixels, alpha, metadata)
    if alpha is None or pixels.shape[2] == 3:
        return _encode_png_8(pixels, alpha, metadata)
    return _encode_with_pillow(fmt, pixels, alpha, metadata, quality)


def _samples(pixels: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """HxWx(C+1) interleaved colour and alpha, or ``pixels`` itself without alpha."""
    return pixels if alpha is None else np.dstack([pixels, alpha])


def _encode_png_16(pixels: np.ndarray, alpha: np.ndarray | None, metadata: ImageMetadata) -> bytes:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA) with the Sub filter on every row."""
    samples = _samples(pixels, alpha)
    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = samples.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)
    bytes_per_pixel = channels * 2
    filtered = rows.copy()
    filtered[:, bytes_per_pixel:] -= rows[:, :-bytes_per_pixel]  # wraps modulo 256 as PNG requires
    scanlines = np.hstack([np.ones((height, 1), np.uint8), filtered])  # filter type 1 (Sub)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"".join(
        [
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_metadata_chunks(metadata),
            _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), _ZLIB_LEVEL)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _encode_png_8(pixels: np.ndarray, alpha: np.ndarray | None, metadata: ImageMetadata) -> bytes:
    """An 8-bit gray, RGB or RGBA PNG: OpenCV's (libpng) pixel chunks, this module's metadata chunks.

    zlib level 3 through OpenCV takes 0.25x the time of Pillow's default PNG encoder for a 2048x2048
    photo-like result, for files 12% larger (benchmarks/png_encode.py); gray+alpha, which OpenCV does
    not write, stays with Pillow.
    """
    samples = _samples(pixels, alpha)
    if samples.shape[2] >= 3:
        samples = cv2.cvtColor(samples, cv2.COLOR_RGBA2BGRA if alpha is not None else cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", samples, [cv2.IMWRITE_PNG_COMPRESSION, _OPENCV_PNG_LEVEL])
    if not ok:
        raise OSError("OpenCV could not encode the PNG")
    chunks = list(_png_chunks(encoded.tobytes()))
    header = [chunk for kind, chunk in chunks if kind == b"IHDR"]
    data = [chunk for kind, chunk in chunks if kind == b"IDAT"]
    return b"".join([PNG_SIGNATURE, *header, _png_metadata_chunks(metadata), *data, _png_chunk(b"IEND", b"")])


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_metadata_chunks(metadata: ImageMetadata) -> bytes:
    """iCCP, eXIf and text chunks exactly as Pillow writes them, taken from a 1x1 PNG it encodes."""
    options = PNG.save_options(metadata, None)
    if not options:
        return b""
    tiny = io.BytesIO()
    Image.new("L", (1, 1)).save(tiny, format="PNG", **options)
    return b"".join(
        chunk for kind, chunk in _png_chunks(tiny.getvalue()) if kind not in (b"IHDR", b"IDAT", b"IEND")
    )


def _png_chunks(png: bytes) -> Iterator[tuple[bytes, bytes]]:
    offset = len(PNG_SIGNATURE)
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        end = offset + 12 + length
        yield png[offset + 4 : offset + 8], png[offset:end]
        offset = end


def _encode_tiff(
    fmt: OutputFormat,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    metadata: ImageMetadata,
    quality: int | None,
) -> bytes:
    """16 bits: :func:`_encode_tiff_16`; 8 bits: Pillow."""
    if pixels.dtype == np.uint16:
        return _encode_tiff_16(pixels, alpha, metadata)
    return _encode_with_pillow(fmt, pixels, alpha, metadata, quality)


def _encode_tiff_16(pixels: np.ndarray, alpha: np.ndarray | None, metadata: ImageMetadata) -> bytes:
    """A little-endian 16-bit TIFF: header, IFD, then one deflate-compressed strip; alpha is an
    unassociated extra sample, and gray+alpha is stored as RGBA, the only form Pillow and OpenCV read."""
    if alpha is not None and pixels.shape[2] == 1:
        pixels = to_colour(pixels)  # readers (Pillow, OpenCV) do not open 16-bit gray+alpha TIFF
    samples = _samples(pixels, alpha)
    height, width, channels = samples.shape
    strip = zlib.compress(samples.astype("<u2").tobytes(), _ZLIB_LEVEL)
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    ifd[256] = width
    ifd[257] = height
    ifd[258] = (16,) * channels
    ifd[259] = 8  # Adobe deflate
    ifd[262] = 1 if pixels.shape[2] == 1 else 2  # BlackIsZero or RGB
    ifd[273] = (0,)  # relative to the end of the IFD: Pillow adds where the strip lands
    ifd[277] = channels
    ifd[278] = height
    ifd[279] = (len(strip),)
    ifd[284] = 1  # chunky
    if alpha is not None:
        ifd[338] = (2,)  # unassociated alpha
    if metadata.icc_profile is not None:
        ifd[34675] = metadata.icc_profile
        ifd.tagtype[34675] = TiffTags.UNDEFINED
    for tag, value in _tiff_tags(metadata).items():
        ifd[tag] = value
    if XMP_TAG in ifd:
        ifd.tagtype[XMP_TAG] = TiffTags.BYTE
    for tag in (256, 257, 273, 278, 279):
        ifd.tagtype[tag] = TiffTags.LONG
    header = b"II" + struct.pack("<HI", 42, 8)  # the IFD follows the header, the strip follows the IFD
    return header + ifd.tobytes(8) + strip


# --------------------------------------------------------------------------------------------------
# The table

PNG = OutputFormat(
    "PNG",
    ("png",),
    alpha=True,
    gray=True,
    deep=True,
    icc=True,
    exif=True,
    provenance="a PNG text chunk",
    own_options=_png_options,
    encoder=_encode_png,
)

#: Every format swinir writes, in the order ``--format`` shows them: those that hold any result at its
#: size in gray, colour and alpha (ICO and ICNS resize to icon sizes; MSP, PALM, XBM and BLP take only
#: 1-bit or palette images; SPIDER stores floats; PDF is a document).
FORMATS: tuple[OutputFormat, ...] = (
    PNG,
    OutputFormat(
        "JPEG",
        ("jpg", "jpeg"),
        gray=True,
        icc=True,
        exif=True,
        provenance="a JPEG comment",
        quality=95,
        own_options=_jpeg_options,
    ),
    OutputFormat(
        "WEBP",
        ("webp",),
        alpha=True,
        icc=True,
        exif=True,
        provenance="an XMP chunk",
        quality=95,
        lossless_at_full_quality=True,
        own_options=_webp_options,
    ),
    OutputFormat("AVIF", ("avif",), alpha=True, icc=True, exif=True, quality=90),
    OutputFormat(
        "TIFF",
        ("tiff", "tif"),
        alpha=True,
        gray=True,
        deep=True,
        icc=True,
        provenance="the XMP tag",
        own_options=_tiff_options,
        encoder=_encode_tiff,
    ),
    OutputFormat("BMP", ("bmp",), gray=True),
    OutputFormat("GIF", ("gif",), palette_only=True),
    OutputFormat("TGA", ("tga",), alpha=True, gray=True),
    OutputFormat("PPM", ("ppm",), gray=True),
    OutputFormat("JPEG2000", ("jp2", "jpeg2000"), gray=True),
    OutputFormat("QOI", ("qoi",)),
    OutputFormat("SGI", ("sgi",)),
    OutputFormat("PCX", ("pcx",)),
    OutputFormat("DIB", ("dib",)),
    OutputFormat("DDS", ("dds",)),
)

Image.init()
#: The formats of :data:`FORMATS` that this Pillow build writes, by Pillow name.
WRITABLE_FORMATS: Mapping[str, OutputFormat] = {fmt.name: fmt for fmt in FORMATS if fmt.name in Image.SAVE}
_BY_WORD = {word.upper(): fmt for fmt in WRITABLE_FORMATS.values() for word in (fmt.name, *fmt.words)}

#: The ``--format`` word of the output format when neither ``--format`` nor an output's suffix names one.
DEFAULT_FORMAT = PNG.word


def writable_format(word: str) -> OutputFormat | None:
    """The format a ``--format`` word (or Pillow name, in any case) chooses; None for one not written."""
    return _BY_WORD.get(word.upper())


def format_names() -> list[str]:
    """The ``--format`` word of each writable format, in the table's order (``png``, ``jpg``...)."""
    return [fmt.word for fmt in WRITABLE_FORMATS.values()]


def quality_defaults() -> str:
    """The default quality of each writable lossy format, for help texts: ``jpg 95, webp 95, avif 90 by
    default; webp 100 is lossless``."""
    lossy = [fmt for fmt in WRITABLE_FORMATS.values() if fmt.quality is not None]
    defaults = ", ".join(f"{fmt.word} {fmt.quality}" for fmt in lossy)
    lossless = " or ".join(f"{fmt.word} 100" for fmt in lossy if fmt.lossless_at_full_quality)
    return f"{defaults} by default; {lossless} is lossless"
