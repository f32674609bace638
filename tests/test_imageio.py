"""Image I/O: faithful reads (equal to what the authors' OpenCV-based test script sees), lossless round
trips at 8 and 16 bits, metadata carry-over, atomic writes, and a clean ImageError for every bad input."""

from __future__ import annotations

import errno
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import TESTSETS, require_shared, run_python
from hostile import full_disk, with_sparse_tail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile, ImageOps, PngImagePlugin

from swinir_cli.durable import FileIdentity, atomic_file, write_file_atomically
from swinir_cli.errors import ImageError, UsageError
from swinir_cli.formats import WRITABLE_FORMATS
from swinir_cli.imageio import (
    ENCODED_BYTES_PER_PIXEL,
    ENCODED_EXTRA_BYTES,
    IMAGE_EXTENSIONS,
    PROVENANCE_KEY,
    ImageMetadata,
    LoadedImage,
    encode_image,
    is_probably_image,
    output_format,
    read_image,
    read_image_stream,
    read_provenance,
    to_8_bit,
    to_colour,
    to_gray,
    write_image,
)
from swinir_cli.provenance import ContentId, Provenance

require_shared()

RNG = np.random.default_rng(1234)


def random_pixels(height: int, width: int, channels: int, dtype: type = np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max, (height, width, channels), dtype=dtype, endpoint=True)


def save_with_pillow(path: Path, array: np.ndarray, **options: object) -> Path:
    Image.fromarray(array).save(path, **options)
    return path


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def leftover_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------------
# Faithful reading: the same pixels as cv2.imread in the authors' test script


@pytest.mark.parametrize(
    "relative",
    ["Set5/HR/baby.png", "Set5/HR/butterfly.png", "Set5/LR_bicubic/X4/birdx4.png", "McMaster/1.tif"],
)
def test_colour_files_equal_cv2_imread_colour(relative: str) -> None:
    path = TESTSETS / relative
    image = read_image(path)
    assert image.pixels.dtype == np.uint8 and image.channels == 3 and image.alpha is None
    np.testing.assert_array_equal(image.pixels, cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


@pytest.mark.parametrize("relative", ["Set12/01.png", "Set12/05.png", "classic5/barbara.bmp"])
def test_gray_files_equal_cv2_imread_grayscale(relative: str) -> None:
    path = TESTSETS / relative
    image = read_image(path)
    assert image.is_gray and image.pixels.shape[2] == 1
    np.testing.assert_array_equal(image.pixels[..., 0], cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))


@pytest.mark.parametrize("subsampling", [0, 2])
def test_jpeg_equals_cv2_imread_colour(tmp_path: Path, subsampling: int) -> None:
    source = cv2.imread(str(TESTSETS / "McMaster/2.tif"), cv2.IMREAD_COLOR)[:96, :80, ::-1]
    path = save_with_pillow(
        tmp_path / "crop.jpg", np.ascontiguousarray(source), quality=70, subsampling=subsampling
    )
    np.testing.assert_array_equal(read_image(path).pixels, cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])


def test_to_gray_is_cv2_cvtcolor_and_to_colour_replicates() -> None:
    rgb = random_pixels(9, 11, 3)
    gray = to_gray(rgb)
    assert gray.shape == (9, 11, 1)
    np.testing.assert_array_equal(gray[..., 0], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    deep = random_pixels(4, 5, 3, np.uint16)
    np.testing.assert_array_equal(to_gray(deep)[..., 0], cv2.cvtColor(deep, cv2.COLOR_RGB2GRAY))
    colour = to_colour(gray)
    assert colour.shape == (9, 11, 3) and all(np.array_equal(colour[..., i], gray[..., 0]) for i in range(3))


def test_to_8_bit_rounds_to_nearest() -> None:
    values = np.array([0, 128, 129, 257, 385, 386, 65535], np.uint16)
    np.testing.assert_array_equal(to_8_bit(values), np.round(values / 257).astype(np.uint8))
    every = np.arange(65536, dtype=np.uint16)
    assert np.abs(to_8_bit(every).astype(np.float64) - every / 257).max() <= 0.5


# ------------------------------------------------------------------------------------------------
# Lossless round trips


@pytest.mark.parametrize("suffix", [".png", ".tiff", ".bmp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_8_bit_round_trip_is_exact(tmp_path: Path, suffix: str, channels: int) -> None:
    pixels = random_pixels(13, 17, channels)
    write_image(tmp_path / f"out{suffix}", LoadedImage(pixels))
    back = read_image(tmp_path / f"out{suffix}")
    assert back.pixels.dtype == np.uint8 and back.alpha is None
    np.testing.assert_array_equal(back.pixels, pixels)


@pytest.mark.parametrize("suffix", [".png", ".tiff", ".webp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_alpha_round_trip_is_exact(tmp_path: Path, suffix: str, channels: int) -> None:
    pixels, alpha = random_pixels(12, 10, channels), random_pixels(12, 10, 1)[..., 0]
    write_image(tmp_path / f"out{suffix}", LoadedImage(pixels, alpha), quality=100)  # WebP 100: lossless
    back = read_image(tmp_path / f"out{suffix}")
    np.testing.assert_array_equal(back.alpha, alpha)
    if suffix == ".webp":  # WebP has no gray: stored as RGB with equal channels
        np.testing.assert_array_equal(back.pixels, to_colour(pixels))
    else:
        assert back.channels == channels
        np.testing.assert_array_equal(back.pixels, pixels)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize(("channels", "with_alpha"), [(1, False), (1, True), (3, False), (3, True)])
def test_16_bit_round_trip_is_bit_exact(tmp_path: Path, suffix: str, channels: int, with_alpha: bool) -> None:
    pixels = random_pixels(11, 14, channels, np.uint16)
    alpha = random_pixels(11, 14, 1, np.uint16)[..., 0] if with_alpha else None
    write_image(tmp_path / f"deep{suffix}", LoadedImage(pixels, alpha))
    back = read_image(tmp_path / f"deep{suffix}")
    assert back.bit_depth == 16 and back.pixels.dtype == np.uint16
    expected_channels = 3 if (suffix == ".tif" and with_alpha) else channels  # gray+alpha TIFF -> RGBA
    np.testing.assert_array_equal(back.pixels, pixels if expected_channels == channels else to_colour(pixels))
    if with_alpha:
        np.testing.assert_array_equal(back.alpha, alpha)
    else:
        assert back.alpha is None


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_files_from_opencv_read_at_full_depth(tmp_path: Path, suffix: str, channels: int) -> None:
    stored = random_pixels(9, 8, channels, np.uint16)  # OpenCV order: BGR(A)
    path = tmp_path / f"cv{suffix}"
    assert cv2.imwrite(str(path), stored[..., 0] if channels == 1 else stored)
    image = read_image(path)
    assert image.pixels.dtype == np.uint16
    if channels == 1:
        np.testing.assert_array_equal(image.pixels[..., 0], stored[..., 0])
    else:
        np.testing.assert_array_equal(image.pixels, stored[..., 2::-1])
    if channels == 4:
        np.testing.assert_array_equal(image.alpha, stored[..., 3])


def test_16_bit_to_8_bit_formats_rounds(tmp_path: Path) -> None:
    pixels = random_pixels(16, 16, 3, np.uint16)
    write_image(tmp_path / "deep.webp", LoadedImage(pixels), quality=100)
    back = read_image(tmp_path / "deep.webp")
    assert back.bit_depth == 8
    np.testing.assert_array_equal(back.pixels, to_8_bit(pixels))


def test_palette_images_become_rgb_or_rgba(tmp_path: Path) -> None:
    rgb = random_pixels(10, 12, 3)
    paletted = Image.fromarray(rgb).quantize(16)
    paletted.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.alpha is None
    np.testing.assert_array_equal(image.pixels, np.asarray(paletted.convert("RGB")))
    np.testing.assert_array_equal(image.pixels, cv2.imread(str(tmp_path / "p.png"))[..., ::-1])
    paletted.save(tmp_path / "pt.png", transparency=3)
    with_key = read_image(tmp_path / "pt.png")
    index = np.asarray(paletted)
    np.testing.assert_array_equal(with_key.alpha, np.where(index == 3, 0, 255))
    np.testing.assert_array_equal(with_key.pixels, np.asarray(paletted.convert("RGB")))


def test_gif_gray_key_and_one_bit_images(tmp_path: Path) -> None:
    gray = random_pixels(8, 9, 1)[..., 0]
    Image.fromarray(gray).save(tmp_path / "key.png", transparency=int(gray[0, 0]))
    keyed = read_image(tmp_path / "key.png")
    assert keyed.is_gray
    np.testing.assert_array_equal(keyed.alpha, np.where(gray == gray[0, 0], 0, 255))
    bits = random_pixels(8, 9, 1)[..., 0] > 127
    Image.fromarray(bits).save(tmp_path / "bits.png")
    one_bit = read_image(tmp_path / "bits.png")
    assert one_bit.is_gray and one_bit.alpha is None
    np.testing.assert_array_equal(one_bit.pixels[..., 0], np.where(bits, 255, 0))
    Image.fromarray(random_pixels(8, 9, 3)).convert("P").save(tmp_path / "anim.gif")
    assert read_image(tmp_path / "anim.gif").channels == 3


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "TIFF"])  # animated GIF, APNG, multi-page TIFF
def test_frames_are_counted_and_the_first_is_read(tmp_path: Path, fmt: str) -> None:
    pages = [np.full((6, 5, 3), value, np.uint8) for value in (0, 255, 128)]
    stream = io.BytesIO()
    Image.fromarray(pages[0]).save(
        stream, fmt, save_all=True, append_images=[Image.fromarray(p) for p in pages[1:]]
    )
    path = tmp_path / f"pages.{fmt.lower()}"
    path.write_bytes(stream.getvalue())
    for source in (stream.getvalue(), path):
        image = read_image(source)
        assert image.frames == 3
        assert int(image.pixels.max()) == 0  # the first frame
    single = io.BytesIO()
    Image.fromarray(pages[1]).save(single, fmt)
    assert read_image(single.getvalue()).frames == 1


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    cmyk = Image.fromarray(random_pixels(16, 16, 3)).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg", quality=95)
    image = read_image(tmp_path / "cmyk.jpg")
    assert image.channels == 3 and image.pixels.dtype == np.uint8
    np.testing.assert_array_equal(image.pixels, np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB")))


def test_unsupported_mode_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ImageError, match=r"float\.tif: unsupported pixel mode 'F'"):
        read_image(tmp_path / "float.tif")


# ------------------------------------------------------------------------------------------------
# Orientation and metadata


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_once_like_exif_transpose(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save_with_pillow(tmp_path / "o.png", random_pixels(5, 7, 3), exif=exif.tobytes())
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, np.asarray(ImageOps.exif_transpose(Image.open(path))))
    kept = Image.Exif()
    kept.load(image.metadata.exif)
    assert kept[0x0112] == 1


def test_rotated_jpeg_reads_upright_and_writes_with_orientation_reset(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    exif[0x010F] = "Camera Maker"
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"  # DateTimeOriginal, in the Exif sub-IFD
    stored = np.ascontiguousarray(cv2.imread(str(TESTSETS / "McMaster/3.tif"))[:48, :64, ::-1])
    path = save_with_pillow(tmp_path / "rotated.jpg", stored, quality=90, exif=exif.tobytes())
    image = read_image(path)
    assert image.pixels.shape == (64, 48, 3)
    np.testing.assert_array_equal(image.pixels, cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])
    write_image(tmp_path / "out.jpg", image)
    written = Image.open(tmp_path / "out.jpg").getexif()
    assert written[0x0112] == 1 and written[0x010F] == "Camera Maker"
    assert written.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"
    assert read_image(tmp_path / "out.jpg").pixels.shape == (64, 48, 3)  # not rotated a second time


def test_icc_exif_and_png_text_carried_over_or_stripped(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "café")
    info.add_text("Comment", "日本語のテキスト")
    exif = Image.Exif()
    exif[0x0131] = "scanner 2000"
    path = tmp_path / "meta.png"
    Image.fromarray(random_pixels(6, 6, 3)).save(
        path, pnginfo=info, icc_profile=srgb_icc(), exif=exif.tobytes()
    )
    image = read_image(path)
    assert image.metadata.png_text == {"Title": "café", "Comment": "日本語のテキスト"}
    for suffix in (".png", ".jpg", ".webp", ".tif"):
        write_image(tmp_path / f"kept{suffix}", image)
        kept = Image.open(tmp_path / f"kept{suffix}")
        assert kept.info.get("icc_profile") == srgb_icc(), suffix
        assert kept.getexif().get(0x0131) == "scanner 2000", suffix
        write_image(tmp_path / f"stripped{suffix}", image, strip_metadata=True)
        stripped = Image.open(tmp_path / f"stripped{suffix}")
        assert "icc_profile" not in stripped.info and 0x0131 not in stripped.getexif(), suffix
    assert Image.open(tmp_path / "kept.png").text == {"Title": "café", "Comment": "日本語のテキスト"}
    assert Image.open(tmp_path / "stripped.png").text == {}


def test_16_bit_outputs_carry_metadata(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    metadata = ImageMetadata(icc_profile=srgb_icc(), exif=exif.tobytes(), png_text={"Author": "Ada"})
    image = LoadedImage(random_pixels(5, 6, 3, np.uint16), metadata=metadata)
    write_image(tmp_path / "deep.png", image)
    write_image(tmp_path / "deep.tif", image)
    png = Image.open(tmp_path / "deep.png")
    assert png.info["icc_profile"] == srgb_icc() and png.text == {"Author": "Ada"}
    assert png.getexif()[0x010F] == "Maker"
    tiff = Image.open(tmp_path / "deep.tif")
    assert tiff.info["icc_profile"] == srgb_icc() and tiff.tag_v2[0x010F] == "Maker"
    assert read_image(tmp_path / "deep.png").metadata.icc_profile == srgb_icc()


def test_rgb_icc_profile_is_not_put_on_a_gray_output(tmp_path: Path) -> None:
    metadata = ImageMetadata(icc_profile=srgb_icc())
    write_image(tmp_path / "gray.png", LoadedImage(random_pixels(4, 4, 1), metadata=metadata))
    assert "icc_profile" not in Image.open(tmp_path / "gray.png").info


def test_corrupt_exif_is_a_warning_not_printed(tmp_path: Path) -> None:
    data = (TESTSETS / "Set5/HR/baby.png").read_bytes()
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(data)).crop((0, 0, 16, 16)).save(
        jpeg, "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping read_image fails the test
        image = read_image(jpeg.getvalue(), name="bad-exif.jpg")
    assert image.pixels.shape == (16, 16, 3)


# ------------------------------------------------------------------------------------------------
# Lossy formats


def test_jpeg_quality_changes_size_and_error_and_drops_alpha(tmp_path: Path) -> None:
    pixels = np.ascontiguousarray(cv2.imread(str(TESTSETS / "McMaster/4.tif"))[:64, :64, ::-1])
    alpha = np.zeros((64, 64), np.uint8)
    for quality in (30, 95):
        write_image(tmp_path / f"q{quality}.jpg", LoadedImage(pixels, alpha), quality=quality)
    sizes = {q: (tmp_path / f"q{q}.jpg").stat().st_size for q in (30, 95)}
    errors = {
        q: np.abs(read_image(tmp_path / f"q{q}.jpg").pixels.astype(int) - pixels).mean() for q in (30, 95)
    }
    assert sizes[30] < sizes[95] and errors[95] < errors[30] < 20
    back = read_image(tmp_path / "q95.jpg")
    assert back.alpha is None and back.channels == 3  # alpha dropped, colour kept as it was
    write_image(tmp_path / "gray.jpg", LoadedImage(pixels[..., :1].copy()))
    assert Image.open(tmp_path / "gray.jpg").mode == "L"


def test_webp_quality_and_lossless(tmp_path: Path) -> None:
    pixels = np.ascontiguousarray(cv2.imread(str(TESTSETS / "McMaster/5.tif"))[:48, :48, ::-1])
    write_image(tmp_path / "lossy.webp", LoadedImage(pixels), quality=40)
    write_image(tmp_path / "lossless.webp", LoadedImage(pixels), quality=100)
    lossy = read_image(tmp_path / "lossy.webp").pixels
    assert 0 < np.abs(lossy.astype(int) - pixels).mean() < 20
    np.testing.assert_array_equal(read_image(tmp_path / "lossless.webp").pixels, pixels)


def test_quality_outside_range_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="101"):
        write_image(tmp_path / "x.jpg", LoadedImage(random_pixels(4, 4, 3)), quality=101)
    assert leftover_files(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Bytes in and out, names, directory scanning


def test_bytes_and_files_agree_and_encode_matches_write(tmp_path: Path) -> None:
    path = TESTSETS / "Set5/HR/bird.png"
    from_bytes = read_image(path.read_bytes())
    np.testing.assert_array_equal(from_bytes.pixels, read_image(path).pixels)
    assert from_bytes.name == "<stdin>"
    write_image(tmp_path / "out.png", from_bytes)
    assert encode_image(from_bytes, "png") == (tmp_path / "out.png").read_bytes()


def test_non_ascii_file_names(tmp_path: Path) -> None:
    folder = tmp_path / "фото 写真"
    folder.mkdir()
    pixels = random_pixels(5, 5, 3)
    write_image(folder / "café ñ 画像.png", LoadedImage(pixels))
    np.testing.assert_array_equal(read_image(folder / "café ñ 画像.png").pixels, pixels)
    (folder / "空.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"空\.png: empty file"):
        read_image(folder / "空.png")


def test_is_probably_image_by_suffix() -> None:
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif"} <= IMAGE_EXTENSIONS
    assert is_probably_image(Path("a/B.PNG")) and is_probably_image(Path("x.JPEG"))
    assert not is_probably_image(Path("notes.txt")) and not is_probably_image(Path("figure.eps"))
    assert not is_probably_image(Path(".out.png.1a2b.tmp"))


# ------------------------------------------------------------------------------------------------
# Bad input: one ImageError naming the file and the reason


def valid_png_bytes() -> bytes:
    stream = io.BytesIO()
    Image.fromarray(random_pixels(24, 24, 3)).save(stream, "PNG")
    return stream.getvalue()


def valid_jpeg_bytes() -> bytes:
    stream = io.BytesIO()
    Image.fromarray(random_pixels(24, 24, 3)).save(stream, "JPEG", quality=80)
    return stream.getvalue()


def bomb_png_bytes(width: int = 100_000, height: int = 100_000) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + body


def corrupt_png_bytes() -> bytes:
    data = bytearray(valid_png_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 64] = bytes(64)  # zeroed zlib stream inside IDAT
    return bytes(data)


@pytest.mark.parametrize(
    ("name", "contents", "reason"),
    [
        ("empty.png", lambda: b"", "empty file"),
        ("notes.png", lambda: b"just some text\n" * 20, "not an image"),
        ("truncated.png", lambda: valid_png_bytes()[:300], "corrupt or truncated"),
        ("truncated.jpg", lambda: valid_jpeg_bytes()[:400], "corrupt or truncated"),
        ("corrupt.png", corrupt_png_bytes, "corrupt or truncated"),
        ("bomb.png", bomb_png_bytes, "decompression bomb"),
        ("header-only.png", lambda: valid_png_bytes()[:33], "corrupt or truncated PNG header"),
        ("notes.jpg", lambda: "текст, не картинка".encode(), "not an image"),
    ],
)
def test_bad_files_raise_image_error_naming_them(tmp_path: Path, name: str, contents, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(contents())
    before = path.read_bytes()
    with pytest.raises(ImageError) as caught:
        read_image(path)
    message = str(caught.value)
    assert name in message and reason in message and "\n" not in message
    assert path.read_bytes() == before  # inputs are never modified


def test_bomb_header_refused_quickly_and_max_pixels_applies(tmp_path: Path) -> None:
    import time

    started = time.perf_counter()
    with pytest.raises(ImageError, match=r"bomb\.png: 100000x100000.*--max-pixels N raises the limit"):
        read_image(bomb_png_bytes(), name="bomb.png")
    assert time.perf_counter() - started < 1.0
    small = valid_png_bytes()  # 24x24 = 576 pixels
    with pytest.raises(ImageError, match="exceeds the limit of 500"):
        read_image(small, name="small.png", max_pixels=500)
    assert read_image(small, max_pixels=576).width == 24
    assert read_image(small, max_pixels=None).width == 24
    with pytest.raises(ImageError, match="corrupt or truncated"):  # no limit: the header passes, data fails
        read_image(bomb_png_bytes(3000, 3000), name="big.png", max_pixels=None)


def test_unreadable_sources_raise_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"missing\.png: cannot read \(no such file or directory\)"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageError, match=r"folder\.png: cannot read \(is a directory\)"):
        read_image(tmp_path / "folder.png")


# ------------------------------------------------------------------------------------------------
# Writes are atomic and fail cleanly


def test_write_replaces_existing_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "out.png").write_bytes(b"old")
    write_image(tmp_path / "out.png", LoadedImage(random_pixels(4, 4, 3)))
    assert leftover_files(tmp_path) == ["out.png"]
    assert read_image(tmp_path / "out.png").width == 4


def test_write_into_a_path_whose_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(ImageError, match=r"afile/out\.png: cannot write \(not a directory\)"):
        write_image(tmp_path / "afile" / "out.png", LoadedImage(random_pixels(4, 4, 3)))
    assert leftover_files(tmp_path) == ["afile"]


def test_unknown_suffix_and_format_are_refused(tmp_path: Path) -> None:
    image = LoadedImage(random_pixels(4, 4, 3))
    with pytest.raises(ImageError, match=r"out\.xyz: cannot tell the image format"):
        write_image(tmp_path / "out.xyz", image)
    with pytest.raises(ImageError, match="swinir does not write NOPE images"):
        write_image(tmp_path / "out.png", image, format="nope")
    assert leftover_files(tmp_path) == []


@pytest.mark.parametrize("fmt", sorted(WRITABLE_FORMATS))
def test_every_written_format_holds_any_result_at_its_size(fmt: str) -> None:
    """Gray, colour, with and without alpha, at a size no icon format has: read back at that size."""
    for channels, alpha in ((1, False), (3, False), (3, True), (1, True)):
        image = LoadedImage(
            random_pixels(300, 301, channels), random_pixels(300, 301, 1)[..., 0] if alpha else None
        )
        back = read_image(encode_image(image, fmt))
        assert (back.width, back.height) == (301, 300), (fmt, channels, alpha)


@pytest.mark.parametrize("fmt", ["ICO", "ICNS", "MSP", "PALM", "XBM", "BLP", "SPIDER", "PDF", "EPS"])
def test_formats_that_cannot_hold_a_result_are_not_written(fmt: str) -> None:
    assert fmt not in WRITABLE_FORMATS
    with pytest.raises(ImageError, match=f"swinir does not write {fmt} images"):
        output_format(Path("out"), fmt)


def test_disk_full_mid_write_removes_temporary_and_keeps_old_output(tmp_path: Path, monkeypatch) -> None:
    """Simulated: the disk cannot be filled here, so Pillow's chunk writer (JPEG here; 8-bit PNG is
    OpenCV's) is patched to write part of the file and then fail with ENOSPC, as a full disk would."""
    original_save = ImageFile._save

    def save_then_fill_disk(im, fp, tile, bufsize=0):
        fp.write(b"\x00" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "out.jpg").write_bytes(b"previous output")
    monkeypatch.setattr(ImageFile, "_save", save_then_fill_disk)
    with pytest.raises(ImageError, match=r"out\.jpg: cannot write \(no space left on device\)"):
        write_image(tmp_path / "out.jpg", LoadedImage(random_pixels(32, 32, 3)))
    monkeypatch.setattr(ImageFile, "_save", original_save)
    assert leftover_files(tmp_path) == ["out.jpg"]
    assert (tmp_path / "out.jpg").read_bytes() == b"previous output"


def test_file_size_limit_mid_write_is_a_real_os_failure(tmp_path: Path) -> None:
    """A real failed write: a child process with RLIMIT_FSIZE of 4 KiB writes a larger 16-bit PNG."""
    script = f"""
import resource, signal, sys
import numpy as np
from swinir_cli.errors import ImageError
from swinir_cli.imageio import LoadedImage, write_image
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
pixels = np.random.default_rng(0).integers(0, 65535, (64, 64, 3), dtype=np.uint16)
try:
    write_image(__import__("pathlib").Path({str(tmp_path / "big.png")!r}), LoadedImage(pixels))
except ImageError as exc:
    print(exc)
    sys.exit(3)
"""
    result = run_python(script, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "big.png: cannot write (file too large)" in result.stdout
    assert leftover_files(tmp_path) == []


# ------------------------------------------------------------------------------------------------
# Property: any bytes end in an image or a clean ImageError

SEEDS = {"png": valid_png_bytes(), "jpeg": valid_jpeg_bytes()}
for _kind, _options in {"gif": {}, "webp": {"quality": 80}, "tiff": {}, "bmp": {}}.items():
    _stream = io.BytesIO()
    Image.fromarray(random_pixels(12, 12, 3)).save(_stream, _kind.upper(), **_options)
    SEEDS[_kind] = _stream.getvalue()
_stream = io.BytesIO()
Image.fromarray(random_pixels(12, 12, 1)[..., 0].astype(np.uint16) * 257).save(_stream, "PNG")
SEEDS["png16"] = _stream.getvalue()


@st.composite
def mutated_image_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        operation = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if operation == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif operation == "truncate":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[position : position + draw(st.integers(1, 32))]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=256), mutated_image_bytes()))
def test_any_bytes_give_an_image_or_an_image_error(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            image = read_image(data, name="fuzz.bin", max_pixels=1 << 20)
        except ImageError as exc:
            assert str(exc).startswith("fuzz.bin: ") and "\n" not in str(exc)
        else:
            assert image.pixels.ndim == 3 and image.pixels.dtype in (np.uint8, np.uint16)
            assert image.alpha is None or image.alpha.shape == image.pixels.shape[:2]


# ------------------------------------------------------------------------------------------------
# Hostile inputs: special files, huge non-images, decoder asserts; full disks, killed writers, long names


def read_in_thread(path: Path, seconds: float = 20.0) -> BaseException | None:
    """read_image(path) in a thread that must finish within ``seconds`` (a FIFO must not block)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            read_image(path)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"read_image({path}) still waiting after {seconds} s"
    return outcome[0]


def test_fifos_devices_sockets_and_symlinks_to_them_are_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "pipe.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock.png"))
    try:
        expected = {
            "pipe.png": "is a FIFO",
            "link.png": "is a FIFO",
            "zero.png": "is a character device",
            "sock.png": "cannot read",  # opening a socket fails outright (ENXIO)
        }
        for name, reason in expected.items():
            error = read_in_thread(tmp_path / name)
            assert isinstance(error, ImageError), (name, error)
            assert str(error).startswith(f"{tmp_path / name}: cannot read") and reason in str(error)
            assert "\n" not in str(error)
    finally:
        listener.close()


def test_a_3_gb_file_that_is_no_image_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    with big.open("wb") as stream:  # sparse: takes no disk space
        stream.write(b"this is no image header at all")
        stream.truncate(3 << 30)
    script = f"""
import resource
from swinir_cli.errors import ImageError
from swinir_cli.imageio import read_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_image({str(big)!r})
except ImageError as exc:
    print(exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    result = run_python(script)
    message, grown_mb = result.stdout.splitlines()
    assert message == f"{big}: not an image (no image format recognises its contents)", result.stderr
    assert int(grown_mb) < 100  # reading it whole would have taken 3 GB


def test_an_image_with_a_2_gb_sparse_tail_is_decoded_in_bounded_memory(tmp_path: Path) -> None:
    tailed = with_sparse_tail(tmp_path / "tailed.png", valid_png_bytes(), 2 << 30)
    script = f"""
import resource
from swinir_cli.imageio import read_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = read_image({str(tailed)!r})
print(image.width, image.height)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    result = run_python(script)
    size, grown_mb = result.stdout.splitlines()
    assert size == "24 24", result.stderr
    assert int(grown_mb) < 100  # reading it whole took 2 GB


def png_with_a_large_chunk(path: Path, chunk_bytes: int, before: bytes) -> Path:
    """A valid 24x24 PNG with a private ancillary chunk of ``chunk_bytes`` zeros (sparse) before its
    chunk ``before`` (IDAT: the header goes on past it; IEND: the pixels are followed by it)."""
    png = valid_png_bytes()
    position = png.index(before) - 4
    crc = zlib.crc32(b"prVt")
    for _ in range(chunk_bytes >> 20):
        crc = zlib.crc32(bytes(1 << 20), crc)
    with path.open("wb") as stream:
        stream.write(png[:position] + struct.pack(">I", chunk_bytes) + b"prVt")
        stream.seek(chunk_bytes, os.SEEK_CUR)
        stream.write(struct.pack(">I", crc) + png[position:])
    return path


@pytest.mark.parametrize(
    ("before", "pixels", "bounded_by"),
    [
        (b"IDAT", 0, "more than an image's header can take"),
        (b"IEND", 24 * 24, "more than a 24x24 image can take"),
    ],
    ids=["in-the-header", "after-the-pixels"],
)
def test_a_decoder_that_would_read_past_what_the_image_can_need_is_stopped(
    tmp_path: Path, before: bytes, pixels: int, bounded_by: str
) -> None:
    path = png_with_a_large_chunk(tmp_path / "padded.png", 48 << 20, before)
    limit = ENCODED_EXTRA_BYTES + ENCODED_BYTES_PER_PIXEL * pixels
    tracemalloc.start()
    try:
        with pytest.raises(ImageError) as caught:
            read_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == f"{path}: decoding it needs more than {limit} bytes, {bounded_by}; refused"
    assert peak < limit + (8 << 20)


def test_a_stream_longer_than_an_image_within_the_pixel_limit_can_take_is_refused(tmp_path: Path) -> None:
    tailed = with_sparse_tail(tmp_path / "tailed.png", valid_png_bytes(), 256 << 20)
    limit = ENCODED_EXTRA_BYTES + ENCODED_BYTES_PER_PIXEL * 1000
    tracemalloc.start()
    try:
        with tailed.open("rb") as stream, pytest.raises(ImageError) as caught:
            read_image_stream(stream, max_pixels=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        f"<stdin>: more than {limit} bytes, more than an image within the limit of 1000 pixels can take "
        "(--max-pixels raises the limit)"
    )
    assert peak < 2 * limit + (8 << 20)  # read once, then joined
    with tailed.open("rb") as stream:
        assert read_image_stream(stream, max_pixels=None).width == 24


def palette_png_without_plte() -> bytes:
    header = struct.pack(">IIBBBBB", 4, 4, 8, 3, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes(4) for _ in range(4))
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            png_chunk(b"IHDR", header),
            png_chunk(b"IDAT", zlib.compress(rows)),
            png_chunk(b"IEND", b""),
        ]
    )


def dds_with_unknown_pixel_format() -> bytes:
    header = bytearray(128)
    header[:4] = b"DDS "
    struct.pack_into("<IIIIIII", header, 4, 124, 0x1007, 4, 4, 16, 0, 0)
    struct.pack_into("<II4sIIIII", header, 76, 32, 0x4, b"ZZZZ", 0, 0, 0, 0, 0)
    return bytes(header) + bytes(64)


@pytest.mark.parametrize(
    "name, contents, reason",
    [
        ("noplte.png", palette_png_without_plte(), "corrupt or truncated image data (AssertionError)"),
        ("odd.dds", dds_with_unknown_pixel_format(), "Unimplemented pixel format"),
    ],
)
def test_decoder_asserts_and_unimplemented_formats_are_one_line_errors(
    tmp_path: Path, name: str, contents: bytes, reason: str
) -> None:
    (tmp_path / name).write_bytes(contents)
    for source in (tmp_path / name, contents):
        with pytest.raises(ImageError) as caught:
            read_image(source, name=name)
        assert str(caught.value).startswith(f"{name}: ") and reason in str(caught.value)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("suffix, depth", [(".png", 8), (".png", 16), (".tif", 8), (".tif", 16), (".jpg", 8)])
def test_full_disk_fails_the_write_naming_the_output_and_keeps_the_old_one(
    tmp_path: Path, suffix: str, depth: int
) -> None:
    dtype = np.uint16 if depth == 16 else np.uint8
    image = LoadedImage(random_pixels(600, 600, 3, dtype))  # incompressible noise: 0.5 MB or more
    with full_disk(tmp_path / "disk", size="192k") as disk:
        output = disk / f"out{suffix}"
        output.write_bytes(b"previous output")
        with pytest.raises(ImageError) as caught:
            write_image(output, image)
        assert str(caught.value) == f"{output}: cannot write (no space left on device)"
        assert leftover_files(disk) == [output.name]
        assert output.read_bytes() == b"previous output"


def big_writer_script(output: Path) -> str:
    """A Python script that writes a 4000x4000 random PNG to ``output`` (long enough to be caught writing)."""
    return f"""
import numpy as np
from pathlib import Path
from swinir_cli.imageio import LoadedImage, write_image
pixels = np.random.default_rng(0).integers(0, 255, (4000, 4000, 3), dtype=np.uint8)
write_image(Path({str(output)!r}), LoadedImage(pixels))
"""


def writer_caught_writing(script: str, folder: Path) -> subprocess.Popen:
    """``script`` started, once its temporary ``.big.png.*.tmp`` exists in ``folder`` (or it ended)."""
    writer = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not list(folder.glob(".big.png.*.tmp")) and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return writer


def test_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path: Path) -> None:
    output = tmp_path / "big.png"
    script = big_writer_script(output)
    writer = writer_caught_writing(script, tmp_path)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    left = list(tmp_path.glob(".big.png.*.tmp"))
    assert len(left) == 1 and not output.exists(), "the writer was not killed while writing"
    others = [tmp_path / ".other.png.0123456789ab.tmp", tmp_path / ".big.png.mine.tmp"]
    for path in others:
        path.write_bytes(b"not this output's temporary file")
    subprocess.run(
        [sys.executable, "-c", script.replace("(4000, 4000, 3)", "(8, 8, 3)")], check=True, timeout=120
    )
    assert leftover_files(tmp_path) == sorted([".big.png.mine.tmp", ".other.png.0123456789ab.tmp", "big.png"])
    assert read_image(output).width == 8


def test_a_live_writers_temporary_is_kept_and_a_dead_ones_removed(tmp_path: Path) -> None:
    """Another process's temporary file is stale only once that process is gone. A writer frozen mid-write
    (SIGSTOP) keeps its temporary file through this process's write, then publishes; that of a process
    that has ended is removed. Removing the live one made its writer fail (issue 18, item 3)."""
    output = tmp_path / "big.png"
    script = big_writer_script(output)
    writer = writer_caught_writing(script, tmp_path)
    writer.send_signal(signal.SIGSTOP)
    try:
        assert len(list(tmp_path.glob(".big.png.*.tmp"))) == 1 and not output.exists(), "not caught writing"
        ended = subprocess.Popen([sys.executable, "-c", "pass"])
        ended.wait(timeout=60)
        (tmp_path / f".big.png.{ended.pid}-0123456789ab.tmp").write_bytes(b"half an image")
        write_image(output, LoadedImage(random_pixels(8, 8, 3)))
    finally:
        writer.send_signal(signal.SIGCONT)
    assert writer.wait(timeout=120) == 0  # its temporary file was still there to publish
    assert leftover_files(tmp_path) == ["big.png"]
    assert read_image(output).width == 4000


def test_a_file_that_appeared_meanwhile_is_never_replaced(tmp_path: Path) -> None:
    """``replaces=None`` publishes only a new file; ``replaces=identity`` only over that very file: what
    another process wrote meanwhile is kept, the write fails with one line, and nothing is left behind."""
    output, image = tmp_path / "out.png", LoadedImage(random_pixels(8, 8, 3))
    output.write_bytes(b"another run's result")
    with pytest.raises(ImageError, match=r"out\.png: another process wrote this file meanwhile"):
        write_image(output, image, replaces=None)
    found = FileIdentity.of(output)
    output.write_bytes(b"rewritten meanwhile")  # another run's write, after this job looked
    with pytest.raises(ImageError, match="another process wrote this file meanwhile"):
        write_image(output, image, replaces=found)
    assert output.read_bytes() == b"rewritten meanwhile"
    assert leftover_files(tmp_path) == ["out.png"]
    write_image(output, image, replaces=FileIdentity.of(output))  # the file it found: replaced
    assert read_image(output).width == 8


def test_the_one_atomic_writer_publishes_only_a_whole_block(tmp_path: Path) -> None:
    """:func:`durable.atomic_file`, which writes images and cache files alike: a block that fails leaves
    the old file and no temporary one; what ``replaces`` refuses is not published; ``mode`` holds."""
    target = tmp_path / "record"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half written"), atomic_file(target) as stream:
        stream.write(b"half")
        raise RuntimeError("half written")
    assert leftover_files(tmp_path) == ["record"] and target.read_bytes() == b"old"
    with pytest.raises(FileExistsError) as caught, atomic_file(target, replaces=None) as stream:
        stream.write(b"new")
    assert caught.value.filename == str(target) and leftover_files(tmp_path) == ["record"]
    write_file_atomically(target, b"new", mode=0o640)
    assert target.read_bytes() == b"new" and leftover_files(tmp_path) == ["record"]
    if os.name == "posix":
        assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("stem", ["a" * 251, "é" * 125 + "x"])  # 255 bytes with ".png", ASCII and UTF-8
def test_output_names_at_the_name_limit_are_written(tmp_path: Path, stem: str) -> None:
    output = tmp_path / f"{stem}.png"
    assert len(os.fsencode(output.name)) == 255
    write_image(output, LoadedImage(random_pixels(4, 4, 3)))
    assert read_image(output).width == 4
    assert leftover_files(tmp_path) == [output.name]


# ------------------------------------------------------------------------------------------------
# Seeded fuzzing of every format Pillow decodes here: only images or clean ImageErrors come out


def _encoded(array: np.ndarray, fmt: str, **options: object) -> bytes:
    stream = io.BytesIO()
    Image.fromarray(array).save(stream, fmt, **options)
    return stream.getvalue()


def fuzz_seeds() -> dict[str, bytes]:
    """Small valid files of every format and variant worth mutating, made here with Pillow and OpenCV."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (16, 20, 4), dtype=np.uint8)
    gray = rgb[..., 0].copy()
    palette = Image.fromarray(rgb).quantize(16)
    seeds = {
        "png-rgb": _encoded(rgb, "PNG"),
        "png-rgba": _encoded(rgba, "PNG"),
        "png-gray16": _encoded(gray.astype(np.uint16) * 257, "PNG"),
        "png-rgb16": cv2.imencode(".png", rgb.astype(np.uint16) * 257)[1].tobytes(),
        "png-noplte": palette_png_without_plte(),
        "jpeg": _encoded(rgb, "JPEG", quality=80),
        "jpeg-progressive": _encoded(rgb, "JPEG", progressive=True, quality=80),
        "jpeg-gray": _encoded(gray, "JPEG"),
        "tiff-rgb": _encoded(rgb, "TIFF"),
        "tiff-deflate": _encoded(rgba, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-float": _encoded(gray.astype(np.float32) / 255, "TIFF"),
        "tiff-rgb16": cv2.imencode(".tiff", rgb.astype(np.uint16) * 257)[1].tobytes(),
        "webp": _encoded(rgb, "WEBP", quality=80),
        "webp-lossless": _encoded(rgba, "WEBP", lossless=True),
        "gif": _encoded(rgb, "GIF"),
        "bmp": _encoded(rgb, "BMP"),
        "bmp-gray": _encoded(gray, "BMP"),
        "dds": _encoded(rgba, "DDS"),
        "dds-odd": dds_with_unknown_pixel_format(),
        "ico": _encoded(rgba, "ICO", sizes=[(16, 16)]),
        "tga": _encoded(rgb, "TGA"),
        "tga-rle": _encoded(rgb, "TGA", compression="tga_rle"),
        "ppm": _encoded(rgb, "PPM"),
        "pcx": _encoded(rgb, "PCX"),
        "sgi": _encoded(rgb, "SGI"),
        "qoi": _encoded(rgba, "QOI"),
        "jpeg2000": _encoded(rgb, "JPEG2000"),
        "avif": _encoded(rgb, "AVIF", quality=60),
    }
    for fmt in ("MSP", "XBM"):  # 1-bit formats
        stream = io.BytesIO()
        Image.fromarray(gray).convert("1").save(stream, fmt)
        seeds[fmt.lower()] = stream.getvalue()
    for name, mode in (("png-palette", "P"), ("tiff-palette", "P"), ("bmp-palette", "P")):
        stream = io.BytesIO()
        palette.save(
            stream, name.split("-")[0].upper(), transparency=3 if mode == "P" and "png" in name else None
        )
        seeds[name] = stream.getvalue()
    stream = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(stream, "JPEG", quality=80)
    seeds["jpeg-cmyk"] = stream.getvalue()
    for fmt in ("TIFF", "GIF", "PNG"):  # multi-page TIFF, animated GIF, APNG
        stream = io.BytesIO()
        frames = [Image.fromarray(np.roll(rgb, shift, axis=1)) for shift in (0, 3, 7)]
        frames[0].save(stream, fmt, save_all=True, append_images=frames[1:])
        seeds[f"{fmt.lower()}-frames"] = stream.getvalue()
    return seeds


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """1 to 8 random edits: bit flips, interesting values, inserts, deletes, truncation, block copies."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        kind = int(rng.integers(0, 7))
        where = int(rng.integers(0, max(len(out), 1)))
        if kind == 0 and out:
            out[where] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1 and out:
            out[where] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == 2 and len(out) >= 4:
            where = min(where, len(out) - 4)
            value = int(rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]))
            out[where : where + 4] = value.to_bytes(4, "big" if rng.integers(0, 2) else "little")
        elif kind == 3:
            out[where:where] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
        elif kind == 4:
            del out[where : where + int(rng.integers(1, 64))]
        elif kind == 5:
            del out[where:]
        elif out:
            start = int(rng.integers(0, len(out)))
            out[where:where] = out[start : start + int(rng.integers(1, 64))]
    return bytes(out)


def fuzz_read_image(cases: int, seed: int) -> tuple[int, int, list[str]]:
    """(images decoded, clean ImageErrors, crashes) over ``cases`` mutated files."""
    seeds = fuzz_seeds()
    names = sorted(seeds)
    rng = np.random.default_rng(seed)
    decoded, clean, crashes = 0, 0, []
    for case in range(cases):
        name = names[case % len(names)]
        data = mutate(seeds[name], rng)
        try:
            image = read_image(data, name="fuzz.bin", max_pixels=1 << 20)
        except ImageError as exc:
            if not str(exc).startswith("fuzz.bin: ") or "\n" in str(exc):
                crashes.append(f"case {case} ({name}): badly formed message {exc!r}")
            clean += 1
        except Exception as exc:
            crashes.append(f"case {case} ({name}): {type(exc).__name__}: {_one_line_of(exc)}")
        else:
            assert image.pixels.ndim == 3 and image.pixels.dtype in (np.uint8, np.uint16)
            decoded += 1
    return decoded, clean, crashes


def _one_line_of(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def test_fuzz_seeds_are_valid_files_of_their_formats() -> None:
    expected_errors = {"png-noplte", "dds-odd", "tiff-float"}
    for name, data in fuzz_seeds().items():
        if name in expected_errors:
            with pytest.raises(ImageError):
                read_image(data, name=name)
        else:
            assert read_image(data, name=name).width in (16, 20), name


def test_fuzzed_files_of_every_format_give_images_or_clean_errors() -> None:
    """Seeded and bounded (a few seconds); SWINIR_FUZZ_CASES=50000 runs a long campaign."""
    cases = int(os.environ.get("SWINIR_FUZZ_CASES", "1500"))
    seed = int(os.environ.get("SWINIR_FUZZ_SEED", "20261202"))
    decoded, clean, crashes = fuzz_read_image(cases, seed)
    print(f"fuzz: {cases} cases, {decoded} decoded, {clean} clean errors, {len(crashes)} crashes")
    assert crashes == []
    assert clean > cases // 10  # the mutations do break files


# --- provenance ----------------------------------------------------------------------------------------

RECORD = Provenance('a "<&>" é.png', ContentId.of(b"input"), "", "settings").to_text()


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp", "tif"])
@pytest.mark.parametrize("depth", [np.uint8, np.uint16])
@pytest.mark.parametrize("alpha", [False, True])
def test_the_provenance_round_trips_inside_the_file(
    tmp_path: Path, suffix: str, depth: type, alpha: bool
) -> None:
    rng = np.random.default_rng(0)
    top = np.iinfo(depth).max
    pixels = rng.integers(0, top, (9, 7, 3)).astype(depth)
    transparency = rng.integers(0, top, (9, 7)).astype(depth) if alpha else None
    image = LoadedImage(pixels, transparency, metadata=ImageMetadata(provenance=RECORD, png_text={"k": "v"}))
    path = tmp_path / f"out.{suffix}"
    write_image(path, image)
    assert read_provenance(path) == RECORD
    assert Provenance.from_text(read_provenance(path) or "") == Provenance.from_text(RECORD)
    back = read_image(path)  # an input's record is never carried into the image read from it
    assert back.content == ContentId.of(path.read_bytes()) and PROVENANCE_KEY not in back.metadata.png_text
    write_image(tmp_path / "again.png", back)
    assert read_provenance(tmp_path / "again.png") is None
    write_image(tmp_path / "stripped.png", image, strip_metadata=True)
    assert read_provenance(tmp_path / "stripped.png") is None


def test_files_without_a_provenance_give_none_without_blocking(tmp_path: Path) -> None:
    image = LoadedImage(np.zeros((4, 4, 3), np.uint8), metadata=ImageMetadata(provenance=RECORD))
    write_image(tmp_path / "a.bmp", image)  # BMP has no place for it
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    (tmp_path / "text.png").write_bytes(b"not an image at all")
    write_image(tmp_path / "a.png", image)
    (tmp_path / "cut.png").write_bytes((tmp_path / "a.png").read_bytes()[:40])  # cut inside the record
    os.mkfifo(tmp_path / "pipe.png")
    for name in ("a.bmp", "plain.png", "text.png", "cut.png", "pipe.png", "missing.png"):
        assert read_provenance(tmp_path / name) is None, name
