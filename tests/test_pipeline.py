"""The restore pipeline: the authors' test procedure, channel handling, precision and model choice."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REFERENCE, SWINIR_S_X4, TINY_CASES, require_shared, run_swinir, save_rgb
from PIL import Image

from swinir_cli import cpu, pipeline
from swinir_cli.checkpoint import read_state_dict
from swinir_cli.errors import ImageError, NonFiniteResultError, UsageError
from swinir_cli.imageio import LoadedImage, read_image
from swinir_cli.memory import choose_tile
from swinir_cli.pipeline import Restorer, select_device
from swinir_cli.resolve import ModelChooser, ModelRequest
from swinir_cli.settings import RestoreSettings
from swinir_cli.tasks import AUTO

require_shared()

TINY = REFERENCE / "tiny"


def assert_matches_golden(got: np.ndarray, want: np.ndarray) -> None:
    """The authors' 8-bit output: at most one level off on at most 0.1% of pixels (float rounding)."""
    assert got.shape == want.shape
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() <= 0.001


@pytest.mark.parametrize(
    "checkpoint", [TINY / f"{c}.pth" for c in TINY_CASES] + [SWINIR_S_X4], ids=Path.stem.fget
)
def test_whole_image_reproduces_the_authors_pipeline(checkpoint: Path) -> None:
    data = np.load(checkpoint.with_suffix(".npz"))
    image, want = data["image_u8"], data["pipeline_u8"]
    restorer = Restorer.from_weights(checkpoint, RestoreSettings(device="cpu", tile=0))
    got = restorer.restore_pixels(image if image.ndim == 3 else image[..., None])
    assert_matches_golden(got if want.ndim == 3 else got[..., 0], want)


def test_gray_model_sees_luma_and_colour_model_keeps_gray_images_gray() -> None:
    rng = np.random.default_rng(0)
    colour = LoadedImage(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    gray = LoadedImage(rng.integers(0, 256, (20, 24, 1), dtype=np.uint8))
    gray_model = Restorer.from_weights(TINY / "dn_gray.pth", RestoreSettings(device="cpu", tile=0))
    assert gray_model.restore_image(colour).pixels.shape == (20, 24, 1)
    colour_model = Restorer.from_weights(
        TINY / "sr_pixelshuffle_x2.pth", RestoreSettings(device="cpu", tile=0)
    )
    assert colour_model.restore_image(gray).pixels.shape == (40, 48, 1)


def test_alpha_is_resized_and_metadata_kept(tmp_path: Path) -> None:
    rgba = np.zeros((16, 20, 4), np.uint8)
    rgba[..., :3] = 120
    rgba[:, 10:, 3] = 255
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    image = read_image(path)
    restored = Restorer.from_weights(
        TINY / "sr_pixelshuffle_x2.pth", RestoreSettings(device="cpu", tile=0)
    ).restore_image(image)
    assert restored.alpha is not None and restored.alpha.shape == (32, 40)
    assert restored.alpha[:, :18].max() < 10 and restored.alpha[:, 22:].min() > 245
    assert restored.metadata == image.metadata


def test_sixteen_bit_in_gives_sixteen_bit_out_at_full_precision() -> None:
    rng = np.random.default_rng(1)
    image16 = rng.integers(0, 65536, (18, 22, 3), dtype=np.uint16)
    restorer = Restorer.from_weights(TINY / "dn_color.pth", RestoreSettings(device="cpu", tile=0))
    out16 = restorer.restore_pixels(image16)
    assert out16.dtype == np.uint16
    x = torch.from_numpy(image16.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    with torch.inference_mode():
        reference = restorer.forward_padded(x).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 65535
    assert np.abs(out16 - reference).max() <= 0.5 + 1e-3


def test_tiny_images_smaller_than_the_padding_work() -> None:
    restorer = Restorer.from_weights(TINY / "sr_pixelshuffle_x2.pth", RestoreSettings(device="cpu", tile=0))
    assert restorer.restore_pixels(np.full((1, 2, 3), 128, np.uint8)).shape == (2, 4, 3)


def test_wrong_channels_and_dtype_are_refused() -> None:
    restorer = Restorer.from_weights(TINY / "dn_gray.pth", RestoreSettings(device="cpu", tile=0))
    with pytest.raises(UsageError, match="1-channel"):
        restorer.restore_pixels(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UsageError, match="uint8 or uint16"):
        restorer.restore_pixels(np.zeros((8, 8, 1), np.float32))


def test_devices_and_precisions_are_checked() -> None:
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="unknown device"):
        select_device("tpu:banana")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA GPU"):
            select_device("cuda:0")
    with pytest.raises(UsageError, match="fp16 is not used on the CPU"):
        Restorer.from_weights(TINY / "dn_gray.pth", RestoreSettings(device="cpu", precision="fp16"))
    with pytest.raises(UsageError, match="unknown precision"):
        Restorer.from_weights(TINY / "dn_gray.pth", RestoreSettings(device="cpu", precision="fp8"))


def test_bf16_stays_close_and_overflow_is_recomputed_in_fp32(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Where the CPU lacks native bf16 the Restorer refuses it (tests/test_cpu.py); PyTorch still emulates
    # it, so the test claims the flag to check the numbers on any CPU.
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: avx512f avx512_bf16\n")
    monkeypatch.setattr(cpu, "CPUINFO", fake)
    data = np.load(TINY / "sr_pixelshuffle_x4.npz")
    warnings: list[str] = []
    restorer = Restorer.from_weights(
        TINY / "sr_pixelshuffle_x4.pth",
        RestoreSettings(device="cpu", tile=0, precision="bf16"),
        on_warning=warnings.append,
    )
    close = restorer.restore_pixels(data["image_u8"])
    assert np.abs(close.astype(int) - data["pipeline_u8"]).max() <= 8

    plain_forward = restorer.model.forward

    def overflowing(x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:  # an fp16 overflow
        y = plain_forward(x, valid)  # as it looks on a GPU
        return y * float("inf") if torch.is_autocast_enabled("cpu") else y

    restorer.model.forward = overflowing
    assert_matches_golden(restorer.restore_pixels(data["image_u8"]), data["pipeline_u8"])
    assert warnings and "recomputed it in fp32" in warnings[0]


def overflowing_weights(path: Path) -> Path:
    """The tiny x2 checkpoint with every last-convolution weight at 3e38: finite, but its sums overflow."""
    state = read_state_dict(TINY / "sr_pixelshuffle_x2.pth")
    torch.save(
        {"params": {**state, "conv_last.weight": torch.full_like(state["conv_last.weight"], 3e38)}}, path
    )
    return path


NOT_FINITE = "the model's result holds inf or NaN even in fp32 (its weights overflow); nothing written"


@pytest.mark.parametrize("tile", [0, 16], ids=["whole", "tiled"])
def test_a_result_still_not_finite_in_fp32_fails_its_image(tmp_path: Path, tile: int) -> None:
    restorer = Restorer.from_weights(
        overflowing_weights(tmp_path / "overflow.pth"), RestoreSettings(device="cpu", tile=tile)
    )
    image = LoadedImage(np.full((40, 36, 3), 128, np.uint8), name="photo.png")
    with pytest.raises(NonFiniteResultError) as caught:
        restorer.restore_image(image)
    assert str(caught.value) == f"photo.png: {NOT_FINITE}"


def test_bf16_overflow_still_not_finite_in_fp32_fails_its_image_after_the_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "cpuinfo"  # as in the test above: PyTorch emulates bf16 where the CPU lacks it
    fake.write_text("processor\t: 0\nflags\t\t: avx512f avx512_bf16\n")
    monkeypatch.setattr(cpu, "CPUINFO", fake)
    warnings: list[str] = []
    restorer = Restorer.from_weights(
        overflowing_weights(tmp_path / "overflow.pth"),
        RestoreSettings(device="cpu", tile=0, precision="bf16"),
        on_warning=warnings.append,
    )
    with pytest.raises(NonFiniteResultError) as caught:
        restorer.restore_image(LoadedImage(np.full((16, 16, 3), 128, np.uint8), name="photo.png"))
    assert str(caught.value) == f"photo.png: {NOT_FINITE}"
    assert warnings == ["bf16 overflowed on a tile; recomputed it in fp32"]


def test_an_image_whose_result_is_not_finite_fails_and_is_not_written(tmp_path: Path) -> None:
    weights = overflowing_weights(tmp_path / "overflow.pth")
    save_rgb(tmp_path / "a.png")
    result = run_swinir("upscale", "a.png", "-w", weights, "--device", "cpu", "-o", "out.png", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"a.png: {NOT_FINITE}" in result.stderr.decode() and b"Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()


@pytest.fixture
def local_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry whose entries are the tiny reference checkpoints (local files: no network)."""
    entries = {
        "denoise-gray-15": ("denoise", "sigma = 15", "dn_gray", 1),
        "denoise-color-15": ("denoise", "sigma = 15", "dn_color", 3),
        "dejpeg-color-10": ("dejpeg", "quality = 10", "car_color_w7", 3),
        "dejpeg-color-40": ("dejpeg", "quality = 40", "dn_color", 3),
        "classical-x2": ("upscale", "scale = 2", "sr_pixelshuffle_x2", 3),
    }
    text = "".join(
        f'[models.{name}]\ntask = "{task}"\n{level}\nchannels = {channels}\nurl = "{TINY / case}.pth"\n'
        f'file = "{name}.pth"\ndescription = "tiny"\n\n'
        for name, (task, level, case, channels) in entries.items()
    )
    path = tmp_path / "registry.toml"
    path.write_text(text)
    monkeypatch.setenv("SWINIR_REGISTRY", str(path))
    monkeypatch.setenv("SWINIR_CACHE_DIR", str(tmp_path / "cache"))
    return path


def test_chooser_matches_gray_and_colour_images(local_registry: Path) -> None:
    chooser = ModelChooser(ModelRequest("denoise", level=15), RestoreSettings(device="cpu", tile=0))
    gray = LoadedImage(np.zeros((8, 8, 1), np.uint8))
    colour = LoadedImage(np.zeros((8, 8, 3), np.uint8))
    assert chooser.restorer_for(gray)[0] == "denoise-gray-15"
    assert chooser.restorer_for(colour)[0] == "denoise-color-15"
    assert chooser.restorer_for(colour)[1] is chooser.restorer_for(colour)[1]  # loaded once


def test_chooser_reads_the_jpeg_quality_from_the_file(local_registry: Path, tmp_path: Path) -> None:
    notices: list[str] = []
    chooser = ModelChooser(
        ModelRequest("dejpeg", level=AUTO),
        RestoreSettings(device="cpu", tile=0),
        notice=notices.append,
    )
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for quality, model in ((12, "dejpeg-color-10"), (45, "dejpeg-color-40")):
        path = tmp_path / f"q{quality}.jpg"
        Image.fromarray(pixels).save(path, quality=quality)
        assert chooser.restorer_for(read_image(path.read_bytes()))[0] == model  # as from stdin
    assert "JPEG quality ~12" in notices[0]

    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    with pytest.raises(ImageError, match="not a JPEG"):
        chooser.restorer_for(read_image(png.getvalue()))


def test_chooser_refuses_a_model_of_another_task_or_scale(local_registry: Path) -> None:
    image = LoadedImage(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UsageError, match="swinir denoise"):
        ModelChooser(ModelRequest("upscale", model="denoise-color-15")).restorer_for(image)
    with pytest.raises(UsageError, match="x2, not x4"):
        ModelChooser(
            ModelRequest("upscale", model="classical-x2", level=4), RestoreSettings(device="cpu")
        ).restorer_for(image)
    with pytest.raises(UsageError, match="scale values available: 2, 3, 4, 8"):
        ModelChooser(ModelRequest("upscale", level=5)).restorer_for(image)


def test_tf32_restorer_leaves_the_cpu_alone() -> None:
    """tf32 is a CUDA setting: on the CPU the flags are untouched and the pixels are the default ones."""
    data = np.load(TINY / "dn_color.npz")
    seen: list[tuple[bool, bool]] = []
    restorers = [
        Restorer.from_weights(TINY / "dn_color.pth", RestoreSettings(device="cpu", tile=0, tf32=on))
        for on in (False, True)
    ]
    restorers[1].model.register_forward_hook(
        lambda *_: seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
    )
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    plain, tf32 = (restorer.restore_pixels(data["image_u8"]) for restorer in restorers)
    assert restorers[1].settings.tf32 and not restorers[0].settings.tf32
    assert seen == [before]
    assert np.array_equal(plain, tf32)


# --- the OpenVINO engine (optional: skipped where openvino is not installed; CI installs the extra) ------


@pytest.fixture
def openvino_installed() -> None:
    pytest.importorskip("openvino")


def copied(checkpoint: Path, folder: Path) -> Path:
    """The checkpoint copied into ``folder``: the engine caches beside it, and ../shared stays untouched."""
    target = folder / checkpoint.name
    target.write_bytes(checkpoint.read_bytes())
    return target


#: Tiny checkpoints that between them hold every operator OpenVINO converts: PixelShuffle (x3), the
#: direct upsampler, nearest+conv with the 3-conv residual, and window 7 at range 255 on one gray channel.
OPENVINO_CASES = ("sr_pixelshuffle_x3", "sr_pixelshuffledirect_x4", "real_large_3conv_x4", "car_gray_w7")


@pytest.mark.usefixtures("openvino_installed")
@pytest.mark.parametrize("checkpoint", [TINY / f"{c}.pth" for c in OPENVINO_CASES], ids=Path.stem.fget)
def test_openvino_engine_matches_the_golden_pipeline_and_pytorch(checkpoint: Path, tmp_path: Path) -> None:
    data = np.load(checkpoint.with_suffix(".npz"))
    image, want = data["image_u8"], data["pipeline_u8"]
    pixels = image if image.ndim == 3 else image[..., None]
    weights = copied(checkpoint, tmp_path)
    engine = Restorer.from_weights(
        weights, RestoreSettings(device="cpu", tile=0, engine="openvino")
    ).restore_pixels(pixels)
    torch_path = Restorer.from_weights(
        weights, RestoreSettings(device="cpu", tile=0, engine="torch")
    ).restore_pixels(pixels)
    assert_matches_golden(engine if want.ndim == 3 else engine[..., 0], want)
    assert_matches_golden(engine, torch_path)


@pytest.mark.usefixtures("openvino_installed")
def test_openvino_tiles_progress_and_cache_like_pytorch(tmp_path: Path) -> None:
    weights = copied(TINY / "sr_pixelshuffle_x2.pth", tmp_path)
    pixels = np.load(TINY / "sr_pixelshuffle_x2.npz")["image_u8"][:16]  # 3 tiles of 2 shapes: 16x16, 16x24
    results, calls = {}, {}
    for engine in ("torch", "openvino"):
        progress: list[tuple[int, int]] = []
        restorer = Restorer.from_weights(
            weights, RestoreSettings(device="cpu", tile=16, tile_overlap=8, engine=engine)
        )
        results[engine] = restorer.restore_pixels(pixels, progress=lambda *a, log=progress: log.append(a))
        calls[engine] = progress
    assert calls["openvino"] == calls["torch"] and len(calls["torch"]) > 1
    assert_matches_golden(results["openvino"], results["torch"])
    # Converted once per tile shape, beside the weights; a second restorer compiles from that cache.
    cache = tmp_path / ".sr_pixelshuffle_x2.pth.openvino"
    saved = {path: path.stat().st_mtime_ns for path in cache.glob("*.xml")}
    assert saved and (cache / "compiled").is_dir()
    again = Restorer.from_weights(
        weights, RestoreSettings(device="cpu", tile=16, tile_overlap=8, engine="openvino")
    )
    np.testing.assert_array_equal(again.restore_pixels(pixels), results["openvino"])
    assert {path: path.stat().st_mtime_ns for path in cache.glob("*.xml")} == saved


def test_the_automatic_tile_on_the_cpu_is_the_same_in_every_precision(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The memory model's CUDA calibration leaves the CPU alone: bf16 tiles as fp32 does, at CPU figures."""
    fake = tmp_path / "cpuinfo"  # PyTorch emulates bf16 where the CPU lacks it
    fake.write_text("processor\t: 0\nflags\t\t: avx512f avx512_bf16\n")
    monkeypatch.setattr(cpu, "CPUINFO", fake)
    monkeypatch.setattr(pipeline, "tile_memory_budget", lambda device: 256 * 2**20)
    tiles = {}
    for precision in ("fp32", "bf16"):
        restorer = Restorer.from_weights(SWINIR_S_X4, RestoreSettings(device="cpu", precision=precision))
        tiles[precision] = [restorer.auto_tile(side, side + 64) for side in (120, 360, 640, 1024)]
    config = restorer.model.config
    cpu_model = dict(scale=config.upscale, embed_dim=config.embed_dim, num_heads=max(config.num_heads))
    expected = [
        choose_tile(
            side,
            side + 64,
            256 * 2**20,
            window=config.window_size,
            overlap=restorer.tile_overlap,
            head_features=config.upsample_features,
            **cpu_model,
        )
        for side in (120, 360, 640, 1024)
    ]
    assert tiles["fp32"] == tiles["bf16"] == expected and expected[-1] > 0
