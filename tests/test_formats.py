"""The format table (swinir_cli/formats.py): it drives ``--format``, and what it states of each format is
what the format really holds once written and read back."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers import DN_COLOR, needs_shared
from PIL import Image, ImageCms

from swinir_cli.batch import OutputOptions
from swinir_cli.cli import main
from swinir_cli.formats import (
    DEFAULT_FORMAT,
    FORMATS,
    WRITABLE_FORMATS,
    ImageMetadata,
    OutputFormat,
    format_names,
    writable_format,
)
from swinir_cli.imageio import LoadedImage, encode_image, read_image, read_provenance, write_image
from swinir_cli.jobs import Job
from swinir_cli.recipe import RestoreRecipe
from swinir_cli.resolve import ModelRequest
from swinir_cli.settings import RestoreSettings

RNG = np.random.default_rng(19)
_DOCUMENT_NAME = 0x010D  # an EXIF tag that TIFF outputs, given only the descriptive ones, do not receive


def _exif() -> bytes:
    exif = Image.Exif()
    exif[_DOCUMENT_NAME] = "a document"
    exif[0x010F] = "Maker"
    return exif.tobytes()


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
METADATA = ImageMetadata(icc_profile=SRGB, exif=_exif(), provenance='{"swinir": "test"}')


def _rgba_16_bit(height: int = 24, width: int = 20) -> LoadedImage:
    """Colour with more than 256 colours and a varied alpha, 16 bits per sample, carrying METADATA."""
    pixels = RNG.integers(0, 65535, (height, width, 3), dtype=np.uint16, endpoint=True)
    alpha = RNG.integers(0, 65535, (height, width), dtype=np.uint16, endpoint=True)
    return LoadedImage(pixels, alpha, metadata=METADATA)


def test_the_format_help_names_every_writable_format_and_the_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["upscale", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())  # the help panel, unwrapped
    described = re.search(r"Output format: (.*?); default (\w+)", shown)
    assert described is not None, shown
    assert described[1].split(", ") == format_names()
    assert described[2] == DEFAULT_FORMAT
    assert "Quality of lossy outputs (jpg 95, webp 95, avif 90 by default; webp 100 is lossless)" in shown
    assert format_names() == [fmt.word for fmt in WRITABLE_FORMATS.values()]


def test_an_unknown_format_is_refused_naming_every_writable_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "a.png"
    write_image(image, LoadedImage(np.zeros((8, 8, 3), np.uint8)))
    assert main(["upscale", str(image), "-f", "nosuch"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"error: --format nosuch: not a format swinir writes ({'|'.join(format_names())})"


def test_every_word_and_pillow_name_of_a_format_chooses_it() -> None:
    for fmt in WRITABLE_FORMATS.values():
        for word in (*fmt.words, fmt.name, fmt.word.upper(), fmt.name.lower()):
            assert writable_format(word) is fmt, word
    assert writable_format("ico") is None and writable_format("nosuch") is None
    assert writable_format(DEFAULT_FORMAT) is WRITABLE_FORMATS["PNG"]


@pytest.mark.parametrize("name", sorted(WRITABLE_FORMATS))
def test_what_the_table_says_a_format_keeps_is_what_reads_back(tmp_path: Path, name: str) -> None:
    """A 16-bit RGBA image with an ICC profile, EXIF and a provenance record, written with the project's
    encoder and read back: alpha, 16 bits, every colour and each piece of metadata survive exactly when
    the table says so; a gray image stays gray exactly when it says so."""
    fmt = WRITABLE_FORMATS[name]
    output = tmp_path / f"out.{fmt.word}"
    write_image(output, _rgba_16_bit(), format=fmt.word)
    back = read_image(output)
    assert (back.alpha is not None) == fmt.alpha
    assert (back.bit_depth == 16) == fmt.deep
    assert (len(np.unique(back.pixels.reshape(-1, 3), axis=0)) <= 256) == fmt.palette_only
    assert (back.metadata.icc_profile == SRGB) == fmt.icc
    exif = Image.Exif()
    exif.load(back.metadata.exif or b"")
    assert (exif.get(_DOCUMENT_NAME) == "a document") == fmt.exif
    assert (read_provenance(output) == METADATA.provenance) == (fmt.provenance is not None)
    gray = LoadedImage(RNG.integers(0, 255, (24, 20, 1), dtype=np.uint8, endpoint=True))
    assert read_image(encode_image(gray, fmt.word)).is_gray == fmt.gray


@needs_shared
def test_a_run_warns_of_the_losses_the_table_states(tmp_path: Path) -> None:
    """A 16-bit colour image with alpha restored into each writable format: the run warns that alpha is
    dropped, the depth reduced and the colours reduced exactly where the format's record says so."""
    source = tmp_path / "deep.png"
    write_image(source, _rgba_16_bit(12, 10))
    for fmt in WRITABLE_FORMATS.values():
        warned: list[str] = []
        recipe = RestoreRecipe(
            ModelRequest("denoise", weights=DN_COLOR),
            RestoreSettings(device="cpu", tile=0),
            OutputOptions(suffix="_d", format=fmt.word),
        )
        result = recipe.runner(on_warning=warned.append).run(Job(source, tmp_path / f"deep_d.{fmt.word}"))
        assert result.status == "done", result.error
        said = " ".join(warned)
        assert (f"{fmt.name} has no alpha channel; the transparency is dropped" in said) == (not fmt.alpha)
        assert (f"{fmt.name} stores 8 bits per sample; the 16-bit depth is reduced" in said) == (not fmt.deep)
        assert (f"{fmt.name} holds 256 colours" in said) == fmt.palette_only


@pytest.mark.parametrize("fmt", [fmt for fmt in WRITABLE_FORMATS.values() if fmt.quality is not None])
def test_the_default_quality_and_lossless_full_quality_are_the_tables(
    fmt: OutputFormat,
) -> None:
    image = LoadedImage(RNG.integers(0, 255, (24, 20, 3), dtype=np.uint8, endpoint=True))
    assert encode_image(image, fmt.word) == encode_image(image, fmt.word, quality=fmt.quality)
    assert encode_image(image, fmt.word) != encode_image(image, fmt.word, quality=fmt.quality // 2)
    exact = np.array_equal(read_image(encode_image(image, fmt.word, quality=100)).pixels, image.pixels)
    assert exact == fmt.lossless_at_full_quality


def test_formats_without_a_quality_ignore_it() -> None:
    image = LoadedImage(RNG.integers(0, 255, (8, 8, 3), dtype=np.uint8, endpoint=True))
    for fmt in WRITABLE_FORMATS.values():
        if fmt.quality is None:
            assert encode_image(image, fmt.word, quality=10) == encode_image(image, fmt.word), fmt.name


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"name": "png", "words": ("png",)}, "upper-case"),
        ({"name": "PNG", "words": ()}, "lower-case and non-empty"),
        ({"name": "PNG", "words": ("PNG",)}, "lower-case and non-empty"),
        ({"name": "JPEG", "words": ("jpg",), "quality": 101}, "outside 0..100"),
        ({"name": "WEBP", "words": ("webp",), "lossless_at_full_quality": True}, "needs a quality"),
        ({"name": "PNG", "words": ("png",), "deep": True}, "needs its own encoder"),
    ],
)
def test_a_format_record_checks_itself(fields: dict, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        OutputFormat(**fields)


def test_the_table_names_each_format_once() -> None:
    names = [fmt.name for fmt in FORMATS]
    words = [word for fmt in FORMATS for word in fmt.words]
    assert len(set(names)) == len(names) and len(set(words)) == len(words)
