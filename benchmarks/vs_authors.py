"""Whole-process CPU time of `swinir upscale` against the authors' `main_test_swinir.py`, alternating runs.

With ``--authors-code DIR`` (a checkout of JingyunLiang/SwinIR extracted for measuring, never copied into
this repository) each case runs this project's command and the authors' script on the same checkpoint and
image, one after the other, ``--repeats`` times, and prints the median seconds of each, the ratio of the
medians, this side's peak resident memory and how far the two 8-bit outputs are apart. The checkpoints are
random weights of the released shapes, built with the authors' own network class and saved as they save
theirs (``{'params_ema': ...}`` for real-SR, ``{'params': ...}`` for lightweight SR); their script picks
the architecture from ``--task`` (``real_sr`` without ``--large_model``: SwinIR-M, nearest+conv) and the
weights from ``--model_path``. Their lightweight-SR task insists on a ground truth and computes PSNR/SSIM
on it: that is part of their time here, as it is when a user runs it.

Their network imports three helpers from ``timm`` (DropPath, to_2tuple, trunc_normal_) and their script
imports ``requests`` (only to download a missing checkpoint); where either is not installed, a stand-in is
put on their path (:data:`STAND_INS`: DropPath is the identity at test time; the ``requests`` stand-in
refuses to download). Without ``--authors-code`` only this project's own baseline runs: the default
command against ``--tile 0``.

With ``--cases forward`` the two networks run in this process instead, on the same random weights.

    python benchmarks/vs_authors.py --authors-code /tmp/authors [--repeats 3] [--cases m192 s512 forward]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
TIMM_STAND_IN = """
import torch
from torch import nn
def to_2tuple(x):
    return tuple(x) if isinstance(x, (list, tuple)) else (x, x)
def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return nn.init.trunc_normal_(tensor, mean, std, a, b)
class DropPath(nn.Module):
    def __init__(self, drop_prob=None):
        super().__init__()
        self.drop_prob = drop_prob
    def forward(self, x):
        return x
"""
REQUESTS_STAND_IN = """
def get(url, **kwargs):
    raise OSError(f"stand-in for requests: no download of {url}")
"""
#: Modules their code imports, and the files of a stand-in for each where it is not installed.
STAND_INS = {
    "timm": {"timm/__init__.py": "", "timm/models/__init__.py": "", "timm/models/layers.py": TIMM_STAND_IN},
    "requests": {"requests.py": REQUESTS_STAND_IN},
}
#: Runs a command, prints its seconds and the peak resident KiB of its processes; its stderr's end is
#: passed on, and a failure exits with the command's code.
PROBE = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "seconds = time.perf_counter() - start\n"
    "sys.stderr.buffer.write(done.stderr[-4000:])\n"
    "if done.returncode:\n"
    "    sys.exit(done.returncode)\n"
    "print(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


@dataclass(frozen=True)
class Case:
    name: str
    task: str
    param_key: str
    config: dict
    size: int
    ours: tuple[str, ...]  # extra options of `swinir upscale`
    authors: tuple[str, ...]  # extra options of main_test_swinir.py


REAL_M = dict(
    upscale=4,
    in_chans=3,
    img_size=64,
    window_size=8,
    img_range=1.0,
    depths=[6] * 6,
    embed_dim=180,
    num_heads=[6] * 6,
    mlp_ratio=2,
    upsampler="nearest+conv",
    resi_connection="1conv",
)
LIGHT_S = dict(
    upscale=4,
    in_chans=3,
    img_size=64,
    window_size=8,
    img_range=1.0,
    depths=[6] * 4,
    embed_dim=60,
    num_heads=[6] * 4,
    mlp_ratio=2,
    upsampler="pixelshuffledirect",
    resi_connection="1conv",
)
CASES = {
    "m192": [
        Case(
            "SwinIR-M x4 real-SR 192x192, whole image; each side reads, restores and writes one image",
            "real_sr",
            "params_ema",
            REAL_M,
            192,
            ("--tile", "0"),
            (),
        )
    ],
    "s512": [
        Case(
            "SwinIR-S x4 512x512, default tile vs their whole image; one image each, theirs also reads a "
            "ground truth and computes PSNR/SSIM on it",
            "lightweight_sr",
            "params",
            LIGHT_S,
            512,
            (),
            (),
        ),
        Case(
            "SwinIR-S x4 512x512, default tile vs their --tile 256; one image each, theirs also reads a "
            "ground truth and computes PSNR/SSIM on it",
            "lightweight_sr",
            "params",
            LIGHT_S,
            512,
            (),
            ("--tile", "256"),
        ),
    ],
}


def authors_env(authors: Path, folder: Path, *, cuda: bool = False) -> dict[str, str]:
    """Environment for their code: their folder first, then stand-ins (in ``folder``) for the modules of
    :data:`STAND_INS` that are not installed; the GPU hidden unless ``cuda`` (their script takes CUDA
    wherever it sees one)."""
    paths = [str(authors)]
    stand_in = folder / "stand_ins"
    for module, files in STAND_INS.items():
        if importlib.util.find_spec(module) is None:
            for name, text in files.items():
                (stand_in / name).parent.mkdir(parents=True, exist_ok=True)
                (stand_in / name).write_text(text)
            paths.append(str(stand_in))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
    return env if cuda else {**env, "CUDA_VISIBLE_DEVICES": ""}


def authors_command(
    authors: Path,
    task: str,
    checkpoint: Path,
    lq: Path,
    gt: Path | None = None,
    options: tuple[str, ...] = (),
) -> list[str]:
    """Their ``main_test_swinir.py`` at x4 on the images of ``lq`` (and the ground truth of ``gt``, which
    their SR tasks other than real-SR require); its results go to ``results/swinir_<task>_x4/`` below the
    folder it runs in."""
    command = [sys.executable, str(authors / "main_test_swinir.py"), "--task", task, "--scale", "4"]
    command += ["--model_path", str(checkpoint), "--folder_lq", str(lq), *options]
    return command + (["--folder_gt", str(gt)] if gt is not None else [])


def make_checkpoint(
    config: dict, param_key: str, path: Path, authors: Path | None, env: dict[str, str] | None
) -> Path:
    """Random weights of ``config``'s shape at ``path`` (kept if it exists), from their own class (without
    their code: from this project's, whose tensor names are theirs), saved as they save theirs
    (``{param_key: state_dict}``)."""
    if path.exists():
        return path
    network = (
        "models.network_swinir import SwinIR" if authors else "swinir_cli.network import SwinIR, SwinIRConfig"
    )
    build = "SwinIR(**config)" if authors else "SwinIR(SwinIRConfig(**config))"
    script = (
        "import json, sys, torch\n"
        f"from {network}\n"
        "config = json.loads(sys.argv[1])\n"
        "torch.manual_seed(0)\n"
        f"model = {build}\n"
        "for p in model.parameters():\n"
        "    p.data.add_(torch.randn_like(p) * 0.02)\n"
        "torch.save({sys.argv[2]: model.state_dict()}, sys.argv[3])\n"
    )
    config = config if authors else {k: v for k, v in config.items() if k != "img_size"}
    subprocess.run(
        [sys.executable, "-c", script, json.dumps(config), param_key, str(path)],
        check=True,
        env=env,
        cwd=authors or path.parent,
        timeout=600,
    )
    return path


def make_images(case: Case, folder: Path) -> tuple[Path, Path, Path]:
    """(our input, the authors' --folder_lq, their --folder_gt): one photo, area-resized to the case's size,
    in folders of this case alone, so that both sides restore exactly one image. Real-SR reads every file of
    --folder_lq; lightweight SR reads every file of --folder_gt (a ground truth it insists on: the photo's
    bicubic x4) and the input ``<name>x4<ext>`` from --folder_lq."""
    photo = cv2.imread(str(sorted((SHARED / "testsets" / "McMaster").glob("*.tif"))[0]), cv2.IMREAD_COLOR)
    small = cv2.resize(photo, (case.size, case.size), interpolation=cv2.INTER_AREA)
    lq, gt = folder / f"{case.task}{case.size}_lq", folder / f"{case.task}{case.size}_gt"
    lq.mkdir(exist_ok=True)
    gt.mkdir(exist_ok=True)
    name = "photox4.png" if case.task == "lightweight_sr" else "photo.png"
    cv2.imwrite(str(lq / name), small)
    if case.task == "lightweight_sr":
        cv2.imwrite(str(gt / "photo.png"), cv2.resize(small, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC))
    return lq / name, lq, gt


def timed(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float | None = None
) -> tuple[float, float]:
    """(seconds, peak resident MiB) of one fresh process running ``command``.

    Raises:
        subprocess.TimeoutExpired: it ran past ``timeout`` seconds; it and its children were killed.
        subprocess.CalledProcessError: it failed (``stderr`` holds the end of its error output).
    """
    with subprocess.Popen(
        [sys.executable, "-c", PROBE, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,  # its own process group, so that a timeout ends the command too
    ) as probe:
        try:
            out, err = probe.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(probe.pid, signal.SIGKILL)
            probe.communicate()
            raise
    if probe.returncode:
        raise subprocess.CalledProcessError(probe.returncode, command, out, err)
    seconds, kib = out.split()
    return float(seconds), int(kib) / 1024


def compare(ours: Path, theirs: Path) -> str:
    a, b = cv2.imread(str(ours)).astype(int), cv2.imread(str(theirs)).astype(int)
    diff = np.abs(a - b)
    mse = float(np.mean(diff.astype(float) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
    return f"max diff {diff.max()}, {np.mean(diff > 0) * 100:.3f}% of values differ, PSNR {psnr:.1f} dB"


def run_case(case: Case, authors: Path | None, folder: Path, repeats: int) -> None:
    our_input, lq, gt = make_images(case, folder)
    their_folder = gt if case.task == "lightweight_sr" else lq
    assert len(list(their_folder.iterdir())) == 1, f"the authors' script would restore {their_folder}'s files"
    env = authors_env(authors, folder) if authors else None
    checkpoint = make_checkpoint(case.config, case.param_key, folder / f"{case.task}_x4.pth", authors, env)
    swinir = str(Path(sys.executable).with_name("swinir"))

    def our_command(output: Path, options: tuple[str, ...]) -> list[str]:
        return [
            swinir,
            "upscale",
            str(our_input),
            "-o",
            str(output),
            "--weights",
            str(checkpoint),
            "--device",
            "cpu",
            "--quiet",
            "--overwrite",
            *options,
        ]

    ours_out = folder / f"ours{case.size}.png"
    ours = our_command(ours_out, case.ours)
    if authors:
        truth = gt if case.task == "lightweight_sr" else None
        other = authors_command(authors, case.task, checkpoint, lq, truth, case.authors)
        results = folder / "results" / f"swinir_{case.task}_x4"
        other_out, label = results / "photo_SwinIR.png", "authors"
    else:
        other_out, label = folder / f"whole{case.size}.png", "ours --tile 0"
        other = our_command(other_out, ("--tile", "0"))
    times: dict[str, list[float]] = {"ours": [], label: []}
    peaks = []
    for _ in range(repeats):
        seconds, peak = timed(ours, folder)
        times["ours"].append(seconds)
        peaks.append(peak)
        if authors:
            shutil.rmtree(results, ignore_errors=True)
        times[label].append(timed(other, folder, env)[0])
        if authors:  # one image restored on each side, every time
            assert [p.name for p in results.iterdir()] == [other_out.name], sorted(results.iterdir())
    ours_s, other_s = statistics.median(times["ours"]), statistics.median(times[label])
    print(f"{case.name}\n  ours   {' '.join(ours[1:])}\n  {label} {' '.join(other[1:])}")
    print(
        f"  seconds ours {[round(t, 1) for t in times['ours']]} {label} {[round(t, 1) for t in times[label]]}"
    )
    print(
        f"  ratio ours/{label} {ours_s / other_s:.2f} (medians {ours_s:.1f} s / {other_s:.1f} s); "
        f"our peak RSS {max(peaks):.0f} MiB; outputs: {compare(ours_out, other_out)}\n",
        flush=True,
    )


def forward_in_process(authors: Path, folder: Path, repeats: int, size: int) -> None:
    """Their network_swinir.SwinIR and this project's SwinIR, same random weights, in this process:
    whole-image forwards of a ``size`` square, alternating, median of ``repeats``."""
    env = authors_env(authors, folder)
    sys.path[:0] = env["PYTHONPATH"].split(os.pathsep)
    from models.network_swinir import SwinIR as TheirSwinIR

    from swinir_cli.cpu import tune_allocator
    from swinir_cli.network import SwinIR, SwinIRConfig

    tune_allocator()  # what a Restorer does on the CPU; it serves both sides here
    for name, config in (
        ("SwinIR-M x4 (classical)", {**REAL_M, "upsampler": "pixelshuffle"}),
        ("SwinIR-S x4", LIGHT_S),
    ):
        torch.manual_seed(0)
        theirs = TheirSwinIR(**config).eval()
        for p in theirs.parameters():
            p.data.add_(torch.randn_like(p) * 0.02)
        ours = SwinIR(SwinIRConfig(**{k: v for k, v in config.items() if k != "img_size"})).eval()
        ours.load_state_dict(theirs.state_dict(), strict=False)
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        times: dict[str, list[float]] = {"ours": [], "authors": []}
        with torch.inference_mode():
            outputs = {"ours": ours(x), "authors": theirs(x)}  # warm-up
            for _ in range(repeats):
                for side, model in (("ours", ours), ("authors", theirs)):
                    start = time.perf_counter()
                    model(x)
                    times[side].append(time.perf_counter() - start)
        diff = (outputs["ours"] - outputs["authors"]).abs().max().item()
        ratio = statistics.median(times["ours"]) / statistics.median(times["authors"])
        print(
            f"{name} forward {size}x{size} in one process: ours {[round(t, 2) for t in times['ours']]} s, "
            f"authors {[round(t, 2) for t in times['authors']]} s, ratio {ratio:.2f}, max |diff| {diff:.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-code", type=Path, help="a checkout of JingyunLiang/SwinIR")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=[*sorted(CASES), "forward"], default=sorted(CASES))
    parser.add_argument("--forward-size", type=int, default=128, help="input side of the forward case")
    args = parser.parse_args()
    if args.authors_code and not (args.authors_code / "main_test_swinir.py").is_file():
        parser.error(f"{args.authors_code} holds no main_test_swinir.py")
    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else (platform.processor())
    )
    print(
        f"{model}, {os.cpu_count()} cores, torch {torch.__version__}; alternating whole processes, "
        f"median of {args.repeats}\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        for key in args.cases:
            if key == "forward":
                if args.authors_code is None:
                    parser.error("the forward case needs --authors-code")
                forward_in_process(args.authors_code.resolve(), Path(folder), args.repeats, args.forward_size)
                continue
            for case in CASES[key]:
                run_case(
                    case,
                    args.authors_code.resolve() if args.authors_code else None,
                    Path(folder),
                    args.repeats,
                )


if __name__ == "__main__":
    main()
