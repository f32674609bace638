"""`swinir eval` and swinir_cli.evaluate against an independent re-statement of the authors' test procedure.

The reference procedure below is written from ../shared/README.md and the authors' main_test_swinir.py
(cv2.imread BGR, float32 / 255, flip-pad to (h // window + 1) * window, network, crop, clamp, round, GT
cropped to h*scale x w*scale, metrics.py); only the network and the metric functions are shared with the
code under test (both are verified against the authors' numbers by test_network.py and test_metrics.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import SHARED, TESTSETS, TINY, require_shared, run_swinir

from swinir_cli.checkpoint import load_model
from swinir_cli.ensemble import self_ensemble
from swinir_cli.errors import ImageError, UsageError
from swinir_cli.evaluate import (
    EvalSettings,
    ImagePair,
    ImageResult,
    authors_luma_u8,
    degraded_input,
    evaluate_model,
    jpeg_input,
    noisy_input,
    pair_lq_images,
    pair_restored_images,
    read_u8,
    restore_float,
    restored_suffixes,
)
from swinir_cli.matlab_resize import downscale, modcrop
from swinir_cli.metrics import compute_all
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings
from swinir_cli.tasks import DEJPEG, task_for

require_shared()

GOLDEN = json.loads((SHARED / "reference" / "metrics_golden.json").read_text())


def run_eval(*args: str | Path) -> dict:
    """`swinir eval ... --device cpu --json`; its final JSON line."""
    done = run_swinir("eval", *args, "--device", "cpu", "--json", text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# The authors' procedure, restated independently


def authors_restore(model: torch.nn.Module, lq_bgr: np.ndarray, scale: int) -> np.ndarray:
    """HxWxC float BGR (or HxWx1) in [0, 1] -> uint8 BGR output, as main_test_swinir.py's process_img."""
    window = model.config.window_size
    chw = np.transpose(lq_bgr if lq_bgr.shape[2] == 1 else lq_bgr[:, :, [2, 1, 0]], (2, 0, 1))
    img = torch.from_numpy(np.ascontiguousarray(chw)).float().unsqueeze(0)
    _, _, h_old, w_old = img.size()
    h_pad = (h_old // window + 1) * window - h_old
    w_pad = (w_old // window + 1) * window - w_old
    img = torch.cat([img, torch.flip(img, [2])], 2)[:, :, : h_old + h_pad, :]
    img = torch.cat([img, torch.flip(img, [3])], 3)[:, :, :, : w_old + w_pad]
    with torch.no_grad():
        output = model(img)[..., : h_old * scale, : w_old * scale]
    output = output.data.squeeze().float().cpu().clamp_(0, 1).numpy()
    if output.ndim == 3:
        output = np.transpose(output[[2, 1, 0], :, :], (1, 2, 0))
    return (output * 255.0).round().astype(np.uint8)


def authors_figures(output_bgr: np.ndarray, gt_bgr: np.ndarray, border: int, jpeg: bool = False) -> dict:
    """metrics.py on the authors' uint8 BGR pair (metrics.py takes RGB: the Y weights need the order)."""
    h, w = output_bgr.shape[:2]
    gt_bgr = np.squeeze(gt_bgr[:h, :w, ...])
    output_rgb = output_bgr[..., ::-1] if output_bgr.ndim == 3 else output_bgr
    gt_rgb = gt_bgr[..., ::-1] if gt_bgr.ndim == 3 else gt_bgr
    figures = compute_all(output_rgb, gt_rgb, crop_border=border, with_psnrb=jpeg)
    return figures if output_bgr.ndim == 3 else {k: v for k, v in figures.items() if not k.endswith("_y")}


def mean_figures(rows: list[dict]) -> dict:
    return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}


def crops(source: Path, names: list[str], target: Path, box: tuple[int, int, int, int]) -> Path:
    """PNG crops (top, left, height, width) of some test images: the same pixels, smaller and faster."""
    target.mkdir()
    top, left, height, width = box
    for name in names:
        image = cv2.imread(str(source / name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(target / (Path(name).stem + ".png")), image[top : top + height, left : left + width])
    return target


# --------------------------------------------------------------------------------------------------
# Acceptance: the CLI against the procedure


def test_sr_evaluation_matches_the_authors_procedure_on_set5_from_lq_and_from_hr_alone(
    tmp_path: Path,
) -> None:
    weights = TINY / "sr_pixelshuffle_x4.pth"
    hr, lr = TESTSETS / "Set5" / "HR", TESTSETS / "Set5" / "LR_bicubic" / "X4"
    report = run_eval("--weights", weights, "--gt", hr, "--lq", lr)
    from_hr = run_eval("--weights", weights, "--gt", hr, "--save-lq", tmp_path / "made")

    model = load_model(weights)
    expected = []
    for gt_path in sorted(hr.glob("*.png")):
        gt = cv2.imread(str(gt_path), cv2.IMREAD_COLOR)
        lq = cv2.imread(str(lr / f"{gt_path.stem}x4.png"), cv2.IMREAD_COLOR).astype(np.float32) / 255.0
        expected.append(authors_figures(authors_restore(model, lq, 4), gt, border=4))
        made = cv2.imread(str(tmp_path / "made" / f"{gt_path.stem}x4.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(
            made, cv2.imread(str(lr / f"{gt_path.stem}x4.png"), cv2.IMREAD_UNCHANGED)
        )
    assert [image["name"] for image in report["images"]] == [p.name for p in sorted(hr.glob("*.png"))]
    averages = mean_figures(expected)
    for key in ("psnr", "ssim", "psnr_y", "ssim_y"):
        tolerance = 0.01 if "psnr" in key else 1e-4
        assert report["average"][key] == pytest.approx(averages[key], abs=tolerance)
        assert from_hr["average"][key] == pytest.approx(report["average"][key], abs=tolerance)
    assert report["average"]["psnrb"] is None
    assert {image["input"] for image in from_hr["images"]} == {"synthesised"}


@pytest.mark.parametrize(("scale", "mode"), [(2, "integer"), (3, "integer"), (4, "integer"), (8, "float")])
def test_sr_inputs_synthesised_from_hr_are_the_published_set5_inputs(scale: int, mode: str) -> None:
    """What the network sees from HR alone is what it sees from the published LR: the figures are the same."""
    settings = EvalSettings("upscale", scale=scale, lq_resize=mode)
    for gt_path in sorted((TESTSETS / "Set5" / "HR").glob("*.png")):
        gt = read_u8(gt_path)
        published = TESTSETS / "Set5" / "LR_bicubic" / f"X{scale}" / f"{gt_path.stem}x{scale}.png"
        made = degraded_input(ImagePair(gt_path, None), gt, settings, channels=3)
        given = degraded_input(ImagePair(gt_path, published), gt, settings, channels=3)
        difference = np.abs(made.astype(int) - given)
        assert made.dtype == np.uint8 and difference.max() <= 1 and np.mean(difference == 0) >= 0.999


def test_sr_evaluation_from_hr_crops_to_a_multiple_of_the_scale_and_keeps_the_inputs(tmp_path: Path) -> None:
    gt_dir = crops(TESTSETS / "McMaster", ["7.tif", "8.tif"], tmp_path / "gt", (10, 20, 50, 37))
    restorer = Restorer.from_weights(TINY / "sr_pixelshuffle_x4.pth", RestoreSettings(device="cpu", tile=0))
    settings = EvalSettings("upscale", scale=4)
    pairs = pair_lq_images(gt_dir, None, 4)
    results = evaluate_model(
        restorer, pairs, settings, save_dir=tmp_path / "out", save_lq_dir=tmp_path / "lq"
    )
    for result in results:
        gt = modcrop(rgb(gt_dir / result.name), 4)
        assert gt.shape == (48, 36, 3)
        lq = downscale(gt, 4)
        np.testing.assert_array_equal(rgb(tmp_path / "lq" / f"{Path(result.name).stem}x4.png"), lq)
        restored = restore_float(restorer, lq.astype(np.float32) / 255)
        np.testing.assert_array_equal(rgb(result.saved), restored)
        expected = compute_all(restored, gt, crop_border=4)
        assert {key: result.metrics[key] for key in expected} == pytest.approx(expected, abs=1e-9)
    # the kept inputs, given as --lq, give the very same figures
    again = evaluate_model(restorer, pair_lq_images(gt_dir, tmp_path / "lq", 4), settings)
    assert [r.metrics for r in again] == [r.metrics for r in results]


def test_sr_evaluation_from_hr_refuses_an_image_smaller_than_the_scale(tmp_path: Path) -> None:
    gt_dir = crops(TESTSETS / "McMaster", ["9.tif"], tmp_path / "gt", (0, 0, 3, 40))
    restorer = Restorer.from_weights(TINY / "sr_pixelshuffle_x4.pth", RestoreSettings(device="cpu", tile=0))
    with pytest.raises(ImageError, match=r"9.png: 40x3 is too small to shrink by 4"):
        evaluate_model(restorer, pair_lq_images(gt_dir, None, 4), EvalSettings("upscale", scale=4))


def test_denoising_evaluation_with_synthesised_noise_matches_and_restored_mode_agrees(tmp_path: Path) -> None:
    gt_dir = crops(TESTSETS / "McMaster", ["1.tif", "2.tif", "3.tif"], tmp_path / "gt", (100, 150, 96, 120))
    weights = TINY / "dn_color.pth"
    report = run_eval("--weights", weights, "--gt", gt_dir, "--sigma", "15", "--save", tmp_path / "out")

    model = load_model(weights)
    expected = []
    for gt_path in sorted(gt_dir.glob("*.png")):
        gt_float = cv2.imread(str(gt_path), cv2.IMREAD_COLOR).astype(np.float32) / 255.0
        np.random.seed(seed=0)
        lq = gt_float + np.random.normal(0, 15 / 255.0, gt_float.shape)  # no clipping, no rounding
        gt = (gt_float * 255.0).round().astype(np.uint8)
        expected.append(authors_figures(authors_restore(model, lq, 1), gt, border=0))
    averages = mean_figures(expected)
    for key in ("psnr", "ssim", "psnr_y", "ssim_y"):
        assert report["average"][key] == pytest.approx(averages[key], abs=0.01 if "psnr" in key else 1e-4)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "1_SwinIR.png",
        "2_SwinIR.png",
        "3_SwinIR.png",
    ]

    # the saved results, measured alone, give the very same figures
    alone = run_eval("--restored", tmp_path / "out", "--gt", gt_dir)
    for ran, measured in zip(report["images"], alone["images"], strict=True):
        for key in ("psnr", "ssim", "psnr_y", "ssim_y"):
            assert measured[key] == ran[key]


def test_restored_mode_reproduces_the_golden_sr_rows_with_suffixed_names(tmp_path: Path) -> None:
    restored = tmp_path / "restored"
    restored.mkdir()
    for gt_path in sorted((TESTSETS / "Set5" / "HR").glob("*.png")):
        lr = cv2.imread(str(TESTSETS / "Set5" / "LR_bicubic" / "X3" / f"{gt_path.stem}x3.png"))
        size = (lr.shape[1] * 3, lr.shape[0] * 3)
        upscaled = cv2.resize(
            lr.astype(np.float32), size, interpolation=cv2.INTER_CUBIC
        )  # as the golden rows
        cv2.imwrite(
            str(restored / f"{gt_path.stem}_x3.png"), np.clip(np.round(upscaled), 0, 255).astype(np.uint8)
        )
    (restored / "notes.txt").write_text("not an image")

    report = run_eval("--restored", restored, "--gt", TESTSETS / "Set5" / "HR", "--scale", "3")
    golden = {Path(row["gt"]).name: row for row in GOLDEN if row["kind"] == "sr" and row["crop_border"] == 3}
    assert len(report["images"]) == 5
    for image in report["images"]:
        for key in ("psnr", "ssim", "psnr_y", "ssim_y"):
            assert image[key] == pytest.approx(golden[image["name"]][key], abs=1e-6)


def test_registry_model_is_evaluated_at_its_own_jpeg_quality(tmp_path: Path) -> None:
    gt_dir = crops(TESTSETS / "classic5", ["baboon.bmp", "lena.bmp"], tmp_path / "gt", (40, 60, 56, 70))
    registry = tmp_path / "registry.toml"
    registry.write_text(
        '[models.tiny-dejpeg-gray-20]\ntask = "dejpeg"\nquality = 20\nchannels = 1\n'
        f'url = "{(TINY / "car_gray_w7.pth").as_uri()}"\ndescription = "tiny random JPEG model"\n'
    )
    environment = {"SWINIR_REGISTRY": str(registry), "SWINIR_CACHE_DIR": str(tmp_path / "cache")}
    done = run_swinir(
        "eval", "tiny-dejpeg-gray-20", "--gt", gt_dir, "--device", "cpu", "--json", env=environment, text=True
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "quality 20" in done.stderr

    model = load_model(TINY / "car_gray_w7.pth")
    for image in report["images"]:
        gt = cv2.imread(str(gt_dir / image["name"]), cv2.IMREAD_UNCHANGED)
        _, encoded = cv2.imencode(".jpg", gt, [int(cv2.IMWRITE_JPEG_QUALITY), 20])
        lq = cv2.imdecode(encoded, 0)[..., None].astype(np.float32) / 255.0
        expected = authors_figures(authors_restore(model, lq, 1), gt[..., None], border=0, jpeg=True)
        assert {k: image[k] for k in expected} == pytest.approx(expected, abs=1e-9)
        assert image["psnr_y"] is None and image["psnrb_y"] is None  # gray: the authors report no Y figures
    assert report["average"]["psnrb"] == pytest.approx(sum(i["psnrb"] for i in report["images"]) / 2)


# --------------------------------------------------------------------------------------------------
# Synthesis, against the golden rows (made with the authors' seeded noise and OpenCV JPEG)


def rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return image[..., None] if image.ndim == 2 else image[..., ::-1]


@pytest.mark.parametrize("row", [r for r in GOLDEN if r["kind"] not in ("sr",)][::3], ids=lambda r: r["kind"])
def test_synthesised_inputs_reproduce_the_golden_degradations(row: dict) -> None:
    gt = rgb(SHARED / "testsets" / row["gt"])
    if "quality" in row:
        degraded = jpeg_input(gt, row["quality"])
    else:
        noisy = noisy_input(gt, row["sigma"])
        degraded = (np.clip(noisy, 0, 1) * 255.0).round().astype(np.uint8)
    figures = compute_all(degraded, gt, with_psnrb="psnrb" in row)
    for key, value in figures.items():
        if key in row:
            assert value == pytest.approx(row[key], abs=1e-6), key


def test_noise_is_neither_clipped_nor_rounded_and_is_drawn_in_bgr_order() -> None:
    gt = np.zeros((4, 5, 3), np.uint8)
    gt[..., 0] = 255
    noisy = noisy_input(gt, 25)
    np.random.seed(0)
    expected_bgr = gt[..., ::-1].astype(np.float32) / 255.0 + np.random.normal(0, 25 / 255.0, gt.shape)
    np.testing.assert_array_equal(noisy, expected_bgr[..., ::-1].astype(np.float32))
    assert noisy.dtype == np.float32 and noisy.min() < 0 and noisy.max() > 1
    assert not np.allclose(noisy * 255, np.round(noisy * 255))


def test_authors_luma_rounds_their_bgr2ycbcr() -> None:
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [12, 200, 77]]], np.uint8)
    b, g, r = (pixels[..., ::-1].astype(np.float32) / 255.0).transpose(2, 0, 1)
    expected = np.round(24.966 * b + 128.553 * g + 65.481 * r + 16.0).astype(np.uint8)
    np.testing.assert_array_equal(authors_luma_u8(pixels)[..., 0], expected)


@pytest.mark.parametrize("case", ["car_color_w7", "car_gray_w7", "dn_gray", "sr_pixelshuffle_x3"])
def test_restore_float_reproduces_the_golden_pipeline(case: str) -> None:
    golden = np.load(TINY / f"{case}.npz")
    pixels = golden["image_u8"]
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    restored = restore_float(
        Restorer.from_weights(TINY / f"{case}.pth", RestoreSettings(device="cpu", tile=0)),
        pixels / np.float32(255),
    )
    off = np.abs(restored.reshape(golden["pipeline_u8"].shape).astype(int) - golden["pipeline_u8"])
    assert off.max() <= 1 and (off > 0).mean() < 1e-3  # last-bit float differences only


def test_jpeg_evaluation_matches_the_procedure_and_reports_psnrb(tmp_path: Path) -> None:
    gt_dir = crops(TESTSETS / "McMaster", ["4.tif", "5.tif"], tmp_path / "gt", (0, 0, 70, 84))
    weights = TINY / "car_color_w7.pth"
    restorer = Restorer.from_weights(weights, RestoreSettings(device="cpu", tile=0))
    assert task_for(restorer.scale, restorer.window) is DEJPEG
    settings = EvalSettings("dejpeg", level=10)
    results = evaluate_model(restorer, pair_lq_images(gt_dir, None, 1), settings, save_lq_dir=tmp_path / "lq")

    for result in results:
        gt = cv2.imread(str(gt_dir / result.name))
        _, encoded = cv2.imencode(".jpg", gt, [int(cv2.IMWRITE_JPEG_QUALITY), 10])
        decoded = cv2.imdecode(encoded, 1)
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "lq" / result.name)), decoded)  # --save-lq
        expected = authors_figures(
            authors_restore(restorer.model, decoded.astype(np.float32) / 255.0, 1), gt, border=0, jpeg=True
        )
        assert result.metrics == pytest.approx(expected, abs=1e-6)
        assert result.metrics["psnrb"] is not None and result.metrics["psnrb_y"] is not None


def test_gray_model_on_colour_ground_truth_uses_the_authors_y(tmp_path: Path) -> None:
    gt_dir = crops(TESTSETS / "McMaster", ["6.tif"], tmp_path / "gt", (0, 0, 40, 48))
    restorer = Restorer.from_weights(TINY / "car_gray_w7.pth", RestoreSettings(device="cpu", tile=0))
    [result] = evaluate_model(restorer, pair_lq_images(gt_dir, None, 1), EvalSettings("dejpeg", level=20))

    y = authors_luma_u8(rgb(gt_dir / "6.png"))[..., 0]
    _, encoded = cv2.imencode(".jpg", y, [int(cv2.IMWRITE_JPEG_QUALITY), 20])
    lq = cv2.imdecode(encoded, 0)[..., None].astype(np.float32) / 255.0
    expected = authors_figures(authors_restore(restorer.model, lq, 1), y[..., None], border=0, jpeg=True)
    assert result.metrics["psnr"] == pytest.approx(expected["psnr"], abs=1e-9)
    assert result.metrics["psnrb"] == pytest.approx(expected["psnrb"], abs=1e-9)
    assert result.metrics["psnr_y"] is None and result.metrics["psnrb_y"] is None


# --------------------------------------------------------------------------------------------------
# Pairing


def touch_images(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for name in names:
        cv2.imwrite(str(folder / name), np.zeros((16, 16, 3), np.uint8))
    return folder


def test_lq_pairing_follows_the_authors_names_then_plain_ones(tmp_path: Path) -> None:
    gt = touch_images(tmp_path / "gt", ["baby.png", "bird.png", "head.png"])
    lq = touch_images(tmp_path / "lq", ["babyx4.png", "bird_x4.bmp", "head.png", "babyx2.png"])
    pairs = pair_lq_images(gt, lq, 4)
    assert [(p.gt.name, p.other.name) for p in pairs] == [
        ("baby.png", "babyx4.png"),
        ("bird.png", "bird_x4.bmp"),
        ("head.png", "head.png"),
    ]
    with pytest.raises(UsageError, match=r"no input for baby.png .*babyx3"):
        pair_lq_images(gt, touch_images(tmp_path / "other", ["baby_x4.png"]), 3)


def restored_pairs(gt: Path, restored: Path, settings: EvalSettings, suffix: str | None = None) -> list:
    pairs, unmatched = pair_restored_images(gt, restored, settings.scale, restored_suffixes(settings, suffix))
    return sorted((p.gt.name, p.other.name) for p in pairs) + [("unmatched", p.name) for p in unmatched]


def test_restored_pairing_finds_swinirs_names_the_authors_and_bare_stems(tmp_path: Path) -> None:
    gt = touch_images(tmp_path / "gt", ["baby.png", "bird.png", "head.png", "img.png", "img_1.png", "w.png"])
    # swinir upscale of the authors' LR names (babyx4.png -> babyx4_x4.png), --save, bare, swinir's own
    names = ["babyx4_x4.png", "bird_SwinIR.png", "head.jpg", "img_x4.png", "img_1_x4.png", "w_x4_x4.png"]
    restored = touch_images(tmp_path / "restored", [*names, "zz.png"])
    assert restored_pairs(gt, restored, EvalSettings("upscale", scale=4)) == [
        ("baby.png", "babyx4_x4.png"),
        ("bird.png", "bird_SwinIR.png"),
        ("head.png", "head.jpg"),
        ("img.png", "img_x4.png"),
        ("img_1.png", "img_1_x4.png"),
        ("w.png", "w_x4_x4.png"),
        ("unmatched", "zz.png"),
    ]
    only_two = touch_images(tmp_path / "gt2", ["baby.png", "bird.png"])
    denoised = touch_images(tmp_path / "denoised", ["baby_denoised.png", "bird.png"])
    assert restored_pairs(only_two, denoised, EvalSettings("denoise")) == [
        ("baby.png", "baby_denoised.png"),
        ("bird.png", "bird.png"),
    ]


def test_restored_pairing_takes_only_the_given_suffix(tmp_path: Path) -> None:
    gt = touch_images(tmp_path / "gt", ["baby.png", "bird.png"])
    restored = touch_images(tmp_path / "restored", ["baby-out.png", "birdx3-out.png", "baby_x3.png"])
    assert restored_pairs(gt, restored, EvalSettings("upscale", scale=3), suffix="-out") == [
        ("baby.png", "baby-out.png"),
        ("bird.png", "birdx3-out.png"),
        ("unmatched", "baby_x3.png"),
    ]


def test_restored_pairing_errors_name_the_names_tried_and_the_rivals(tmp_path: Path) -> None:
    gt = touch_images(tmp_path / "gt", ["baby.png"])
    settings = EvalSettings("upscale", scale=4)
    touch_images(tmp_path / "none", ["bird_x4.png"])
    with pytest.raises(UsageError) as missing:
        restored_pairs(gt, tmp_path / "none", settings)
    message = str(missing.value)
    assert message.startswith("no restored image for baby.png in ") and "--suffix" in message
    tried = "baby_x4.*, babyx4_x4.*, baby_x4_x4.*, baby_SwinIR.*, babyx4_SwinIR.*, baby_x4_SwinIR.*, baby.*, "
    assert f"looked for {tried}babyx4.*;" in message
    with pytest.raises(UsageError, match=r"looked for baby-out\.\*, babyx4-out\.\*, baby_x4-out\.\*;"):
        restored_pairs(gt, tmp_path / "none", settings, suffix="-out")

    touch_images(tmp_path / "twice", ["baby_x4.png", "baby_SwinIR.png"])
    with pytest.raises(
        UsageError, match=r"several restored images match baby\.png .*: baby_x4\.png, baby_Swin"
    ):
        restored_pairs(gt, tmp_path / "twice", settings)

    claimed = touch_images(tmp_path / "gt_claimed", ["a.png", "a_x4.png"])
    touch_images(tmp_path / "shared", ["a_x4.png"])
    with pytest.raises(UsageError, match=r"a_x4\.png in .* matches both a\.png and a_x4\.png"):
        restored_pairs(claimed, tmp_path / "shared", settings)


def test_json_figures_are_strict_json_and_say_which_are_infinite() -> None:
    record = ImageResult(
        "same.png", {"psnr": math.inf, "ssim": 1.0, "psnr_y": math.inf, "ssim_y": 1.0}
    ).record()
    assert record["psnr"] is None and record["psnr_y"] is None and record["ssim"] == 1.0
    assert record["infinite"] == ["psnr", "psnr_y"] and record["psnrb"] is None
    json.dumps(record, allow_nan=False)
    assert ImageResult("x.png", {"psnr": 30.0}).record()["infinite"] == []


def test_noisy_inputs_cannot_be_kept(tmp_path: Path) -> None:
    restorer = Restorer.from_weights(TINY / "dn_gray.pth", RestoreSettings(device="cpu", tile=0))
    pair = ImagePair(TESTSETS / "Set12" / "01.png", None)
    with pytest.raises(UsageError, match="--save-lq cannot keep noisy inputs"):
        evaluate_model(restorer, [pair], EvalSettings("denoise", level=15), save_lq_dir=tmp_path / "lq")
    assert not (tmp_path / "lq").exists()


def test_saving_into_the_ground_truth_folder_or_onto_a_file_is_refused(tmp_path: Path) -> None:
    gt_dir = crops(TESTSETS / "McMaster", ["4.tif"], tmp_path / "gt", (0, 0, 24, 24))
    restorer = Restorer.from_weights(TINY / "car_color_w7.pth", RestoreSettings(device="cpu", tile=0))
    pairs = pair_lq_images(gt_dir, None, 1)
    settings = EvalSettings("dejpeg", level=10)
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(UsageError, match=r"--save .*gt is the --gt folder"):
        evaluate_model(restorer, pairs, settings, save_dir=tmp_path / "." / "gt")
    with pytest.raises(UsageError, match=r"--save-lq .*file exists and is not a folder"):
        evaluate_model(restorer, pairs, settings, save_lq_dir=tmp_path / "file")
    assert sorted(p.name for p in gt_dir.iterdir()) == ["4.png"]


# --------------------------------------------------------------------------------------------------
# The x8 self-ensemble


def test_self_ensemble_of_equivariant_functions_is_exact() -> None:
    # float64 holding float32 values: the sums of eight equal terms are exact, so equality is exact too
    x = torch.rand(1, 3, 7, 10, generator=torch.Generator().manual_seed(0)).double()
    assert torch.equal(self_ensemble(lambda t: t)(x), x)
    nearest_x2 = self_ensemble(lambda t: t.repeat_interleave(2, -2).repeat_interleave(2, -1))
    assert torch.equal(nearest_x2(x), x.repeat_interleave(2, -2).repeat_interleave(2, -1))


def test_self_ensemble_of_a_non_equivariant_function_is_its_orbit_mean() -> None:
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1)).double()
    shift_right = self_ensemble(lambda t: torch.roll(t, 1, -1))
    expected = sum(torch.roll(x, shift, dim) for shift, dim in ((1, -1), (-1, -1), (1, -2), (-1, -2))) / 4
    torch.testing.assert_close(shift_right(x), expected)


def test_tta_output_differs_from_plain_but_stays_close() -> None:
    golden = np.load(TINY / "real_nearestconv_x2.npz")
    plain = Restorer.from_weights(TINY / "real_nearestconv_x2.pth", RestoreSettings(device="cpu", tile=0))
    ensembled = Restorer(plain.model, RestoreSettings(device="cpu", tile=0, tta=True))
    a = plain.restore_pixels(golden["image_u8"]).astype(int)
    b = ensembled.restore_pixels(golden["image_u8"])
    difference = np.abs(a - b)
    assert (difference > 0).mean() > 0.5  # the eight passes really ran and were averaged
    assert (
        difference.mean() < 8 and difference.max() <= 40
    )  # measured: mean 4.9, max 23 levels (random weights)
    np.testing.assert_array_equal(restore_float(plain, golden["image_u8"] / np.float32(255), tta=True), b)


def test_evaluation_refuses_synthesis_without_a_level() -> None:
    restorer = Restorer.from_weights(TINY / "dn_gray.pth", RestoreSettings(device="cpu", tile=0))
    pair = ImagePair(TESTSETS / "Set12" / "01.png", None)
    with pytest.raises(UsageError, match="needs --sigma"):
        evaluate_model(restorer, [pair], EvalSettings("denoise"))
