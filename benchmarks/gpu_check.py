"""One-run GPU readiness check: precision, attention kernels, speed, tile memory and the OOM fallback.

Writes ``gpu_check.json`` (every figure) and ``gpu_check.md`` (readable tables) under ``--out`` (default
``$OUT`` when set, else ``gpu_check_out``), rewritten after every section, so a run stopped by its time
budget still leaves what it measured. Sections:

a. ``precision``: largest 8-bit difference and inf/NaN count of bf16 and fp16 against fp32, on every
   golden case of the reference data (``tiny/*.pth`` and ``swinir_s_x4_random.pth``; fp32 also against
   the authors' 8-bit outputs) and on the 31 released architectures with random weights (small inputs).
b. ``sdpa_backends``: which ``scaled_dot_product_attention`` backend (flash, efficient, cudnn, math) runs
   the window attention, head dims 10/30 and windows 8/7, with and without the head-dim padding, one
   backend at a time (``torch.nn.attention.sdpa_kernel``), with the reasons torch gives for refusing; and
   the attention ops the profiler sees in a whole forward.
c. ``speed``: ms per image for SwinIR-M x4 at 256x256 (whole image) and images/s for SwinIR-S x4 at
   512x512 (whole forward and the full pipeline at the default tile), fp32 in the authors' order of
   operations vs the optimised fp32 path vs TF32 vs bf16 vs fp16, batch 1 and 4, with CUDA
   synchronisation and warm-up, and each variant's 8-bit difference from fp32.
d. ``memory``: estimated (the memory model calibrated for the device and precision, as the automatic
   tile costs it) vs measured (``torch.cuda.max_memory_allocated``) peak of the automatic tile at three
   image sizes, in fp32, bf16 and fp16; a calibrated ratio near 0.8 (1 / the 1.25 margin) or below is safe.
e. ``oom_fallback``: the process capped with ``torch.cuda.set_per_process_memory_fraction`` and a tile too
   large forced; the warnings and whether the result equals the uncapped one.
f. ``compile``: ``torch.compile`` at a fixed tile shape against eager (optional, last).

``--dry-run`` runs every section at tiny sizes on the CPU (skipping what only CUDA can do, with the reason)
in well under a minute; tests/test_gpu_check.py runs it. On a lent GPU (see /work/notes/gpu_run.md):

    PYTHONPATH=. python3 benchmarks/gpu_check.py --shared build/gpu_shared --out $OUT

The reference data (``--shared``: the folder holding ``reference/``, or ``reference/`` itself) defaults
to ``../shared`` beside the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from swinir_cli.checkpoint import load_model
from swinir_cli.devices import PRECISION_NAMES, check_cpu_precision, cuda_tf32, resolve_precision
from swinir_cli.errors import UsageError
from swinir_cli.memory import estimate_peak_bytes
from swinir_cli.network import SwinIR, SwinIRConfig, WindowAttention, autocast_dtype, shift_window_mask
from swinir_cli.pipeline import Restorer
from swinir_cli.settings import RestoreSettings

REPO = Path(__file__).resolve().parents[1]
SWINIR_M_X4 = {
    "embed_dim": 180,
    "depths": [6] * 6,
    "num_heads": [6] * 6,
    "upscale": 4,
    "upsampler": "pixelshuffle",
}
SWINIR_S_X4 = {
    "embed_dim": 60,
    "depths": [6] * 4,
    "num_heads": [6] * 4,
    "upscale": 4,
    "upsampler": "pixelshuffledirect",
}
#: (label, precision, optimized, tf32) of the speed comparison; the first is the baseline.
VARIANTS = (
    ("fp32 authors' order", "fp32", False, False),
    ("fp32", "fp32", True, False),
    ("fp32 tf32", "fp32", True, True),
    ("bf16", "bf16", True, False),
    ("fp16", "fp16", True, False),
)
#: Dry runs keep the widths and head dims (10, 30) but one residual group of two blocks: the figures mean
#: nothing there, the code paths are the same.
REDUCED = {"depths": [2], "num_heads": [6]}
SECTIONS = ("sdpa_backends", "precision", "speed", "memory", "oom_fallback", "compile")


class OutOfTime(Exception):
    """The run's time budget is spent: the section stops and the report is written."""


@dataclass(frozen=True)
class Plan:
    """Sizes and repeat counts of one run: the real check on a GPU, or the tiny CPU dry run."""

    device: torch.device
    dry_run: bool
    released_input: int = 64
    released_limit: int | None = None  # None: all 31 architectures
    speed_m_size: int = 256
    speed_s_size: int = 512
    batches: tuple[int, ...] = (1, 4)
    warmup: int = 2
    repeats: int = 3
    memory_sizes: tuple[int, ...] = (512, 1024, 2048)
    attention_windows: int = 1024  # windows per probe: one 256x256 tile of an 8-window model
    compile_tile: int = 256
    models: dict = field(default_factory=lambda: {"SwinIR-M x4": SWINIR_M_X4, "SwinIR-S x4": SWINIR_S_X4})
    #: Seconds the budget checks ask for, times this (the dry run's items are tiny).
    time_scale: float = 1.0

    @classmethod
    def for_run(cls, dry_run: bool, device: torch.device) -> Plan:
        if not dry_run:
            return cls(device=device, dry_run=False)
        return cls(
            device=device,
            dry_run=True,
            released_input=16,
            released_limit=2,
            speed_m_size=16,
            speed_s_size=32,
            warmup=1,
            repeats=1,
            memory_sizes=(16, 24, 32),
            attention_windows=8,
            compile_tile=32,
            models={"SwinIR-M x4": {**SWINIR_M_X4, **REDUCED}, "SwinIR-S x4": {**SWINIR_S_X4, **REDUCED}},
            time_scale=0.1,
        )


@dataclass
class Budget:
    """A soft deadline the sections check between items, and a hard alarm shortly after it."""

    seconds: float
    scale: float = 1.0  # Plan.time_scale
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def require(self, seconds: float, what: str) -> None:
        seconds *= self.scale
        if self.left() < seconds:
            raise OutOfTime(f"{what}: {self.left():.0f} s of the budget left, {seconds:.0f} s needed")


class Report:
    """The sections' results, written as ``<name>.json`` and ``<name>.md`` after every section."""

    def __init__(self, out: Path, meta: dict, name: str = "gpu_check") -> None:
        self.out = out
        self.name = name
        self.data: dict = {"meta": meta, "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def section(self, name: str, budget: Budget) -> Iterator[dict]:
        """Collects one section; OutOfTime or an error ends it with its status and reason recorded."""
        entry: dict = {"status": "ok", "reason": None, "rows": []}
        self.data["sections"][name] = entry
        started = time.monotonic()
        try:
            yield entry
        except OutOfTime as stop:
            entry.update(status="partial" if entry["rows"] else "skipped", reason=f"out of time ({stop})")
        except Exception as error:  # a probe that breaks must not lose the other sections' figures
            entry.update(status="error", reason=f"{type(error).__name__}: {error}")
            entry["traceback"] = traceback.format_exc(limit=8)
        finally:
            entry["seconds"] = round(time.monotonic() - started, 2)
            self.data["meta"]["elapsed_s"] = round(time.monotonic() - budget.start, 2)
            self.write()

    def skip(self, name: str, reason: str) -> None:
        self.data["sections"][name] = {"status": "skipped", "reason": reason, "rows": [], "seconds": 0.0}
        self.write()

    def write(self) -> None:
        (self.out / f"{self.name}.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / f"{self.name}.md").write_text(markdown(self.data, self.name))


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], plan: Plan) -> float:
    """Median wall time of ``plan.repeats`` calls after ``plan.warmup`` (synchronised on CUDA)."""
    for _ in range(plan.warmup):
        fn()
    times = []
    for _ in range(plan.repeats):
        synchronize(plan.device)
        start = time.perf_counter()
        fn()
        synchronize(plan.device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def synthetic_image(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """(H, W, C) uint8 with smooth structure, edges and mild noise: closer to a photo than white noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, max(height // 8, 2), max(width // 8, 2), generator=generator)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    noisy = smooth + 0.03 * torch.randn(smooth.shape, generator=generator)
    pixels = (noisy.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0)
    return np.ascontiguousarray(pixels.numpy())


def random_model(config: dict, seed: int, device: torch.device) -> SwinIR:
    """A network of ``config`` (the authors' constructor arguments) with default init plus noise."""
    arguments = {key: value for key, value in config.items() if key != "img_size"}
    torch.manual_seed(seed)
    with torch.device(device):
        model = SwinIR(SwinIRConfig(**arguments))
    with torch.no_grad():
        for parameter in model.parameters():  # break symmetric init so attention is not trivial
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model.eval().requires_grad_(False)


def difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Largest 8-bit difference and the share of values that differ."""
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {"max_diff_8bit": int(diff.max()), "differing_fraction": round(float((diff > 0).mean()), 6)}


def quantised(y: torch.Tensor) -> np.ndarray:
    return (y.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def unavailable_precision(precision: str, device: torch.device) -> str | None:
    """Why the Restorer refuses ``precision`` on ``device`` (fp16 on the CPU, bf16 on a CPU without
    native bf16), or None."""
    try:
        dtype = resolve_precision(precision, device)
        if device.type == "cpu":
            check_cpu_precision(dtype)
    except UsageError as refusal:
        return str(refusal)
    return None


def reference_dir(shared: Path) -> Path:
    """``shared/reference`` or ``shared`` itself, whichever holds the golden data."""
    for candidate in (shared / "reference", shared):
        if (candidate / "tiny").is_dir() and (candidate / "official_models.json").is_file():
            return candidate
    raise SystemExit(
        f"gpu_check: no reference data under {shared} (want reference/tiny, official_models.json)"
    )


# --------------------------------------------------------------------------------------------------
# a. precision
# --------------------------------------------------------------------------------------------------


def nonfinite_counter(model: SwinIR) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    """inf/NaN counts of the network's outputs computed under autocast (before the fp32 fallback)."""
    counts: list[int] = []

    def hook(_module: torch.nn.Module, _args: tuple, out: torch.Tensor) -> None:
        if autocast_dtype(out.device.type) is not None:
            counts.append(int(out.numel() - torch.isfinite(out).sum().item()))

    return counts, model.register_forward_hook(hook)


def precision_rows(case: str, kind: str, model: SwinIR, image: np.ndarray, plan: Plan) -> list[dict]:
    """bf16 and fp16 against fp32 on one image, whole-image pipeline; the fp32 row carries the reference."""
    pixels = image if image.ndim == 3 else image[..., None]
    reference = RestoreSettings(device=str(plan.device), tile=0, precision="fp32")  # auto is fp16 on CUDA
    fp32 = Restorer(model, reference).restore_pixels(pixels)
    rows = [{"case": case, "kind": kind, "input": list(image.shape[:2]), "precision": "fp32", "fp32": fp32}]
    for precision in ("bf16", "fp16"):
        row = {"case": case, "kind": kind, "input": list(image.shape[:2]), "precision": precision}
        reason = unavailable_precision(precision, plan.device)
        if reason:
            rows.append({**row, "skipped": reason})
            continue
        warned: list[str] = []
        counts, handle = nonfinite_counter(model)
        try:
            restorer = Restorer(
                model,
                RestoreSettings(device=str(plan.device), tile=0, precision=precision),
                on_warning=warned.append,
            )
            got = restorer.restore_pixels(pixels)
        finally:
            handle.remove()
        rows.append({**row, **difference(got, fp32), "nonfinite": sum(counts), "fp32_fallback": bool(warned)})
    return rows


def golden_cases(reference: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted((reference / "tiny").glob("*.pth")):
        yield path.stem, path
    yield "swinir_s_x4_random", reference / "swinir_s_x4_random.pth"


def run_precision(entry: dict, reference: Path, plan: Plan, budget: Budget) -> None:
    for case, path in golden_cases(reference):
        budget.require(5, f"golden case {case}")
        data = np.load(path.with_suffix(".npz"))
        rows = precision_rows(case, "golden", load_model(path), data["image_u8"], plan)
        fp32 = rows[0].pop("fp32")
        golden = data["pipeline_u8"] if fp32.shape[2] == 3 else data["pipeline_u8"][..., None]
        rows[0].update({f"vs_authors_{key}": value for key, value in difference(fp32, golden).items()})
        entry["rows"] += rows
    released = json.loads((reference / "official_models.json").read_text())
    chosen = (
        released if plan.released_limit is None else distinct_architectures(released)[: plan.released_limit]
    )
    if len(chosen) < len(released):
        entry["reason"] = f"dry run: {len(chosen)} of {len(released)} released architectures"
    for seed, row in enumerate(chosen):
        budget.require(8, f"released architecture {row['file']}")
        config = row["config"]
        image = synthetic_image(plan.released_input, plan.released_input, config["in_chans"], seed)
        rows = precision_rows(row["file"], "released", random_model(config, seed, plan.device), image, plan)
        rows[0].pop("fp32")
        entry["rows"] += rows
    entry["summary"] = precision_summary(entry["rows"])


def distinct_architectures(released: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for row in released:
        key = json.dumps({k: v for k, v in row["config"].items() if k != "img_size"}, sort_keys=True)
        seen.setdefault(key, row)
    return list(seen.values())


def precision_summary(rows: list[dict]) -> dict:
    """Per precision: cases run, worst 8-bit difference, total inf/NaN, cases that fell back to fp32."""
    summary = {}
    for precision in ("bf16", "fp16"):
        measured = [r for r in rows if r["precision"] == precision and "max_diff_8bit" in r]
        summary[precision] = {
            "cases": len(measured),
            "worst_max_diff_8bit": max((r["max_diff_8bit"] for r in measured), default=None),
            "cases_over_one_level": sum(r["max_diff_8bit"] > 1 for r in measured),
            "nonfinite_total": sum(r["nonfinite"] for r in measured),
            "fp32_fallbacks": sum(r["fp32_fallback"] for r in measured),
        }
    return summary


# --------------------------------------------------------------------------------------------------
# b. SDPA backends
# --------------------------------------------------------------------------------------------------


def attention_probe(head_dim: int, window: int, dtype: torch.dtype, plan: Plan) -> tuple:
    """A window attention and q/k/v/bias of ``plan.attention_windows`` shifted windows (6 heads)."""
    torch.manual_seed(head_dim * window)
    heads, n = 6, window * window
    attention = WindowAttention(heads * head_dim, window, heads).to(plan.device).requires_grad_(False)
    with torch.no_grad():
        attention.relative_position_bias_table.normal_(0, 0.5)
    shape = (plan.attention_windows, heads, n, head_dim)
    q, k, v = (torch.randn(shape, device=plan.device, dtype=dtype) for _ in "qkv")
    # every window with the shift mask of a bottom-right window, as the masked windows get it
    mask = shift_window_mask(2 * window, 2 * window, window, window // 2)[3].to(plan.device, dtype)
    bias = (attention.position_bias(dtype) + mask)[None].repeat(plan.attention_windows, 1, 1, 1)
    return attention, q, k, v, bias


def sdpa_op_names(fn: Callable[[], object]) -> list[str]:
    """The scaled-dot-product-attention ops (the backend's name is in them) that ``fn`` dispatches."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = {event.key for event in prof.key_averages()}
    return sorted(n for n in names if "attention" in n and n != "aten::scaled_dot_product_attention")


def run_backend_probe(attention, q, k, v, bias, backend, plan: Plan, reference: torch.Tensor) -> dict:
    from torch.nn.attention import sdpa_kernel

    def call() -> torch.Tensor:
        restricted = sdpa_kernel(backend) if backend is not None else contextlib.nullcontext()
        with torch.inference_mode(), restricted:
            return attention._attend(q, k, v, bias, True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = call()
            synchronize(plan.device)
        except RuntimeError as error:
            reasons = sorted({str(w.message).splitlines()[0][:200] for w in caught})
            return {"ok": False, "error": str(error).splitlines()[0][:200], "reasons": reasons}
    # torch warns, for example, when it copies a mask to align it for a fused kernel
    row = {"ok": True, "warnings": sorted({str(w.message).splitlines()[0][:200] for w in caught})}
    row["ms"] = round(1000 * median_seconds(call, plan), 4)
    row["max_abs_error_vs_fp32"] = float((out.float() - reference).abs().max())
    if backend is None:
        row["ops"] = sdpa_op_names(call)
    return row


def run_sdpa_backends(entry: dict, plan: Plan, budget: Budget) -> None:
    from torch.nn.attention import SDPBackend

    backends = {
        "default": None,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "math": SDPBackend.MATH,
    }
    for head_dim in (10, 30):
        for window in (8, 7):
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                budget.require(3, f"attention probes head dim {head_dim}")
                attention, q, k, v, bias = attention_probe(head_dim, window, dtype, plan)
                WindowAttention.pad_head_dim = False
                with torch.inference_mode():
                    reference = attention._attend(q.float(), k.float(), v.float(), bias.float(), True)
                for padded in (False, True):
                    WindowAttention.pad_head_dim = padded
                    for name, backend in backends.items():
                        probe = run_backend_probe(attention, q, k, v, bias, backend, plan, reference)
                        entry["rows"].append(
                            {
                                "head_dim": head_dim,
                                "window": window,
                                "dtype": str(dtype).removeprefix("torch."),
                                "padded": padded,
                                "backend": name,
                                **probe,
                            }
                        )
    WindowAttention.pad_head_dim = None
    entry["whole_forward_ops"] = whole_forward_ops(plan)


def whole_forward_ops(plan: Plan) -> dict:
    """Attention ops in one SwinIR-S forward per compute dtype, with and without the padding."""
    model = random_model(plan.models["SwinIR-S x4"], 0, plan.device)
    x = torch.rand(1, 3, 64, 64, device=plan.device)
    result = {}
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for padded in (False, True):
            WindowAttention.pad_head_dim = padded
            autocast = torch.autocast(plan.device.type, dtype=dtype, enabled=dtype != torch.float32)

            def forward(autocast: contextlib.AbstractContextManager = autocast) -> None:
                with torch.inference_mode(), autocast:
                    model(x)

            key = f"{str(dtype).removeprefix('torch.')} {'padded' if padded else 'unpadded'}"
            try:
                result[key] = sdpa_op_names(forward)
            except RuntimeError as error:
                result[key] = f"error: {str(error).splitlines()[0][:200]}"
    WindowAttention.pad_head_dim = None
    return result


# --------------------------------------------------------------------------------------------------
# c. speed
# --------------------------------------------------------------------------------------------------


def speed_case(
    entry: dict, name: str, config: dict, size: int, mode: str, plan: Plan, budget: Budget
) -> None:
    """Every variant and batch of one model and size; ``mode`` is ``forward`` (a batch of whole images
    through the padded forward) or ``pipeline`` (restore_pixels at the default tile, batch = tiles/pass)."""
    model = random_model(config, 0, plan.device)
    image = synthetic_image(size, size, 3)
    x = torch.from_numpy(image).to(plan.device).permute(2, 0, 1)[None].float().div_(255)
    for batch in plan.batches:
        baseline_s, baseline_out = None, None
        for label, precision, optimized, tf32 in VARIANTS:
            row = {"model": name, "size": size, "mode": mode, "batch": batch, "variant": label}
            reason = unavailable_precision(precision, plan.device) or (
                "TF32 exists only on CUDA" if tf32 and plan.device.type != "cuda" else None
            )
            if reason:
                entry["rows"].append({**row, "skipped": reason})
                continue
            budget.require(10, f"speed {name} {label} batch {batch}")
            model.optimized = optimized
            restorer = Restorer(
                model,
                RestoreSettings(
                    device=str(plan.device),
                    tile=None if mode == "pipeline" else 0,
                    batch=batch,
                    precision=precision,
                    tf32=tf32,
                ),
            )
            try:
                seconds, out = time_variant(restorer, image, x, mode, row, plan)
            except torch.cuda.OutOfMemoryError as error:
                entry["rows"].append({**row, "error": str(error).splitlines()[0][:200]})
                torch.cuda.empty_cache()
                continue
            if baseline_s is None:
                baseline_s, baseline_out = seconds, out
            row["speedup_vs_authors_order"] = round(baseline_s / seconds, 3)
            row.update(difference(out, baseline_out))
            entry["rows"].append(row)
    model.optimized = True


def time_variant(
    restorer: Restorer, image: np.ndarray, x: torch.Tensor, mode: str, row: dict, plan: Plan
) -> tuple[float, np.ndarray]:
    """Median seconds of one call and its 8-bit output; fills ``row``'s timing fields."""
    if mode == "pipeline":
        row["tile"] = restorer.auto_tile(*image.shape[:2])
        run = lambda: restorer.restore_pixels(image)  # noqa: E731
    else:
        run = lambda: restorer.forward_padded(x.expand(row["batch"], -1, -1, -1))  # noqa: E731
    with torch.inference_mode():
        seconds = median_seconds(run, plan)
        out = run() if mode == "pipeline" else quantised(run())
    images = 1 if mode == "pipeline" else row["batch"]
    row.update(ms_per_image=round(1000 * seconds / images, 3), images_per_s=round(images / seconds, 3))
    return seconds, out


def run_speed(entry: dict, plan: Plan, budget: Budget) -> None:
    m, s = plan.models["SwinIR-M x4"], plan.models["SwinIR-S x4"]
    speed_case(entry, "SwinIR-M x4", m, plan.speed_m_size, "forward", plan, budget)
    speed_case(entry, "SwinIR-S x4", s, plan.speed_s_size, "forward", plan, budget)
    speed_case(entry, "SwinIR-S x4", s, plan.speed_s_size, "pipeline", plan, budget)
    entry["summary"] = speed_summary(entry["rows"])


def speed_summary(rows: list[dict]) -> dict:
    """Per model, mode and batch: the fastest variant within one 8-bit level of the fp32 baseline."""
    best: dict[str, dict] = {}
    for row in rows:
        if "ms_per_image" not in row or row["max_diff_8bit"] > 1:
            continue
        key = f"{row['model']} {row['size']} {row['mode']} batch {row['batch']}"
        if key not in best or row["ms_per_image"] < best[key]["ms_per_image"]:
            best[key] = {
                k: row[k] for k in ("variant", "ms_per_image", "images_per_s", "speedup_vs_authors_order")
            }
    return best


# --------------------------------------------------------------------------------------------------
# d. memory, e. out-of-memory fallback, f. compile
# --------------------------------------------------------------------------------------------------


def estimated_bytes(restorer: Restorer, height: int, width: int, tile: int) -> int:
    """The memory model's estimate for the largest forward the automatic tile plans, calibrated for the
    restorer's device and precision (as choose_tile costs it: a whole image is not a tiled run)."""
    config = restorer.model.config
    window = config.window_size
    extent = (height, width) if tile == 0 else (min(tile + window - 1, height), min(tile + window - 1, width))
    return estimate_peak_bytes(
        *extent,
        window=window,
        scale=config.upscale,
        embed_dim=config.embed_dim,
        num_heads=max(config.num_heads),
        head_features=config.upsample_features,
        batch=restorer.settings.batch,
        tiled=tile != 0,
        device_type=restorer.device.type,
        precision=PRECISION_NAMES[restorer.dtype],
    )


def run_memory(entry: dict, plan: Plan, budget: Budget) -> None:
    entry["reason"] = (
        "estimates are the tiler's (calibrated per device and precision) for the largest forward"
    )
    if plan.device.type != "cuda":
        entry["reason"] += (
            "; measured peaks need CUDA's allocator statistics: CPU rows give the estimate only"
        )
    model = random_model(plan.models["SwinIR-M x4"], 0, plan.device)
    for precision in ("fp32", "bf16", "fp16"):
        reason = unavailable_precision(precision, plan.device)
        if reason:
            entry["rows"].append({"model": "SwinIR-M x4", "precision": precision, "skipped": reason})
            continue
        warned: list[str] = []
        restorer = Restorer(
            model, RestoreSettings(device=str(plan.device), precision=precision), on_warning=warned.append
        )
        for size in plan.memory_sizes:
            warned.clear()
            budget.require(30 if size >= 2048 else 10, f"memory {precision} {size}")
            tile = restorer.auto_tile(size, size)
            row = {"model": "SwinIR-M x4", "precision": precision, "size": size, "tile": tile}
            row["estimated_bytes"] = estimated_bytes(restorer, size, size, tile)
            if plan.device.type == "cuda":
                image = synthetic_image(size, size, 3)
                torch.cuda.empty_cache()
                weights = torch.cuda.memory_allocated(plan.device)
                torch.cuda.reset_peak_memory_stats(plan.device)
                start = time.perf_counter()
                restorer.restore_pixels(image)
                row["seconds"] = round(time.perf_counter() - start, 3)
                row["measured_bytes"] = torch.cuda.max_memory_allocated(plan.device) - weights
                row["measured_over_estimated"] = round(row["measured_bytes"] / row["estimated_bytes"], 3)
                row["warnings"] = list(warned)
            entry["rows"].append(row)


def run_oom_fallback(entry: dict, plan: Plan, budget: Budget) -> None:
    """SwinIR-S x4 on a 1024x1024 image: the cap lets a 256 tile through but not 1024 (or 512)."""
    budget.require(40, "out-of-memory fallback")
    device, size, small = plan.device, 1024, 256
    model = random_model(plan.models["SwinIR-S x4"], 0, device)
    image = synthetic_image(size, size, 3)
    torch.cuda.empty_cache()
    weights = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    normal = Restorer(model, RestoreSettings(device=str(device), tile=small)).restore_pixels(image)
    small_peak = torch.cuda.max_memory_allocated(device) - weights
    total = torch.cuda.get_device_properties(device).total_memory
    cap = weights + int(1.6 * small_peak) + (64 << 20)
    warned: list[str] = []
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / total, device)
    try:
        capped = Restorer(
            model, RestoreSettings(device=str(device), tile=size), on_warning=warned.append
        ).restore_pixels(image)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    entry["rows"].append(
        {
            "model": "SwinIR-S x4",
            "size": size,
            "forced_tile": size,
            "cap_bytes": cap,
            "tile_256_peak_bytes": small_peak,
            "warnings": warned,
            "equals_uncapped_tile_256": bool(np.array_equal(capped, normal)),
            **difference(capped, normal),
        }
    )


def run_compile(entry: dict, plan: Plan, budget: Budget) -> None:
    """SwinIR-S x4 on one padded tile shape, eager vs ``torch.compile``, bf16 and fp32."""
    budget.require(120, "torch.compile (compiling takes a minute or more)")
    model = random_model(plan.models["SwinIR-S x4"], 0, plan.device)
    side = (plan.compile_tile // 8 + 1) * 8  # what forward_padded hands the network for a full tile
    x = torch.rand(1, 3, side, side, device=plan.device)
    compiled = torch.compile(model, dynamic=False)
    strict = cuda_tf32(False) if plan.device.type == "cuda" else contextlib.nullcontext()
    with strict:  # fp32 as the Restorer runs it: no TF32
        for precision, dtype in (
            ("bf16", torch.bfloat16),
            ("fp32", torch.float32),
        ):  # bf16 first: it matters more
            entry["rows"].append(compile_row(model, compiled, x, precision, dtype, plan))


def compile_row(
    model: SwinIR, compiled: torch.nn.Module, x: torch.Tensor, precision: str, dtype: torch.dtype, plan: Plan
) -> dict:
    """Eager vs compiled on ``x`` in ``dtype``: ms, the first compiled call's seconds, 8-bit difference."""

    def run(net: torch.nn.Module) -> torch.Tensor:
        autocast = torch.autocast(plan.device.type, dtype=dtype, enabled=dtype != torch.float32)
        with torch.inference_mode(), autocast:
            return net(x)

    eager_s = median_seconds(lambda: run(model), plan)
    start = time.perf_counter()
    compiled_out = run(compiled)  # compiles (or recompiles for the new autocast state)
    synchronize(plan.device)
    first_call_s = time.perf_counter() - start
    compiled_s = median_seconds(lambda: run(compiled), plan)
    return {
        "model": "SwinIR-S x4",
        "input": list(x.shape[2:]),
        "precision": precision,
        "eager_ms": round(1000 * eager_s, 3),
        "compiled_ms": round(1000 * compiled_s, 3),
        "speedup": round(eager_s / compiled_s, 3),
        "first_call_s": round(first_call_s, 1),
        **difference(quantised(compiled_out), quantised(run(model))),
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def markdown(data: dict, title: str) -> str:
    meta = data["meta"]
    lines = [f"# {title} — {meta.get('device_name')} — {meta.get('date')}", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items()]
    for name, entry in data["sections"].items():
        lines += ["", f"## {name}: {entry['status']} ({entry.get('seconds', 0)} s)"]
        if entry.get("reason"):
            lines.append(f"\n{entry['reason']}")
        if entry.get("summary"):
            lines += ["", "```", json.dumps(entry["summary"], indent=1), "```"]
        if entry.get("whole_forward_ops"):
            lines += ["", "attention ops in a whole SwinIR-S forward:", ""]
            lines += [f"- {key}: {ops}" for key, ops in entry["whole_forward_ops"].items()]
        lines += table(entry["rows"])
    return "\n".join(lines) + "\n"


def table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    columns = list(dict.fromkeys(key for row in rows for key in row if key not in ("traceback",)))
    cell = lambda v: "" if v is None else str(v).replace("|", "/")  # noqa: E731
    lines = ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def cpu_name() -> str:
    """The processor's model name (as lscpu prints it), else the machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_meta(plan: Plan, args: argparse.Namespace) -> dict:
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dry_run": plan.dry_run,
        "device": str(plan.device),
        "device_name": torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else cpu_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "budget_s": args.budget,
        "models": plan.models,
        "argv": sys.argv[1:],
    }
    if plan.device.type == "cuda":
        meta["total_memory_bytes"] = torch.cuda.get_device_properties(plan.device).total_memory
        meta["cudnn"] = torch.backends.cudnn.version()
        allowed = getattr(torch.backends.cuda, "fp16_bf16_reduction_math_sdp_allowed", None)
        meta["math_sdp_fp16_bf16_reduction_allowed"] = allowed() if allowed else None
    return meta


def skip_reason(name: str, plan: Plan, compile_it: bool) -> str | None:
    """Why section ``name`` does not run in this plan, or None."""
    if name == "oom_fallback" and plan.device.type != "cuda":
        return "capping memory needs CUDA (torch.cuda.set_per_process_memory_fraction)"
    if name == "compile" and plan.dry_run:
        return "dry run: compiling takes minutes on a CPU"
    if name == "compile" and not compile_it:
        return "--no-compile"
    return None


def run_sections(report: Report, plan: Plan, reference: Path, budget: Budget, compile_it: bool) -> None:
    steps: dict[str, Callable[[dict], None]] = {
        "sdpa_backends": lambda entry: run_sdpa_backends(entry, plan, budget),
        "precision": lambda entry: run_precision(entry, reference, plan, budget),
        "speed": lambda entry: run_speed(entry, plan, budget),
        "memory": lambda entry: run_memory(entry, plan, budget),
        "oom_fallback": lambda entry: run_oom_fallback(entry, plan, budget),
        "compile": lambda entry: run_compile(entry, plan, budget),
    }
    for name in SECTIONS:
        reason = skip_reason(name, plan, compile_it)
        if reason is None and budget.left() <= 0:
            reason = "out of time before the section started"
        if reason is not None:
            report.skip(name, reason)
            continue
        with report.section(name, budget) as entry:
            steps[name](entry)


def run_device(spec: str | None, dry_run: bool) -> torch.device:
    """The run's device: ``spec``, else CUDA (the CPU for a dry run); CUDA always with its index, which
    per-device calls such as ``torch.cuda.set_per_process_memory_fraction`` require (plain ``cuda`` is
    refused there).

    Raises:
        SystemExit: CUDA is asked for and there is none.
    """
    device = torch.device(spec or ("cpu" if dry_run else "cuda"))
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise SystemExit(f"{Path(sys.argv[0]).stem}: no CUDA GPU here; use --dry-run (CPU) or --device cpu")
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_check_out"))
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="holds reference/")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --dry-run")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, under a minute")
    parser.add_argument("--budget", type=float, default=None, help="seconds (default 300, dry run 50)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile section")
    args = parser.parse_args()
    args.budget = args.budget or (50.0 if args.dry_run else 300.0)
    device = run_device(args.device, args.dry_run)
    reference = reference_dir(args.shared)
    plan = Plan.for_run(args.dry_run, device)
    budget = Budget(args.budget, plan.time_scale)
    report = Report(args.out, run_meta(plan, args))

    def out_of_time(_signum: int, _frame: object) -> None:
        raise OutOfTime("hard limit reached")

    signal.signal(signal.SIGALRM, out_of_time)
    # the sections' own checks come first; this stops a call that runs long, again every 5 s if swallowed
    signal.setitimer(signal.ITIMER_REAL, args.budget + 15, 5)
    try:
        run_sections(report, plan, reference, budget, compile_it=not args.no_compile)
    except OutOfTime as stop:  # the hard limit struck between sections
        report.data["meta"]["stopped"] = str(stop)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    report.data["meta"]["elapsed_s"] = round(time.monotonic() - budget.start, 2)
    report.write()
    print((args.out / "gpu_check.md").read_text())


if __name__ == "__main__":
    main()
