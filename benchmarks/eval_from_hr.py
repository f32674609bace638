"""`swinir eval` on Set5 from the HR images alone against the same from the published LR images.

For each scale, the tiny random pixelshuffle checkpoint of that scale (``../shared/reference/tiny``) is
evaluated twice through the command (in this process): ``--gt Set5/HR --lq Set5/LR_bicubic/X<scale>``
and ``--gt Set5/HR`` alone, whose inputs are made by MATLAB-exact bicubic shrinking (``--lq-resize
integer`` for x2-x4 and ``float`` for x8, the modes the published files were made in). Prints the
average figures of both and their largest difference. Random weights give low figures; the point is
their equality.

    python benchmarks/eval_from_hr.py [--scales 2 3 4 8]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

from swinir_cli.cli import main

SHARED = Path(__file__).resolve().parents[2] / "shared"
SET5 = SHARED / "testsets" / "Set5"
#: The mode each published folder was made in (benchmarks/matlab_resize.py measures it).
PUBLISHED_MODE = {2: "integer", 3: "integer", 4: "integer", 8: "float"}
KEYS = ("psnr", "ssim", "psnr_y", "ssim_y")


def averages(*args: str | Path) -> dict[str, float]:
    """The average figures of ``swinir eval ARGS --json --quiet --device cpu``, run in this process."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["eval", *map(str, args), "--json", "--quiet", "--device", "cpu"])
    if code != 0:
        raise SystemExit(f"swinir eval {' '.join(map(str, args))} failed with exit code {code}")
    return json.loads(printed.getvalue().splitlines()[-1])["average"]


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4, 8], choices=sorted(PUBLISHED_MODE))
    args = parser.parse_args()
    print(f"{'scale':>5} {'inputs':<26} " + " ".join(f"{key:>9}" for key in KEYS))
    for scale in args.scales:
        weights = SHARED / "reference" / "tiny" / f"sr_pixelshuffle_x{scale}.pth"
        model = ("--weights", weights, "--gt", SET5 / "HR")
        runs = {
            f"published X{scale}": averages(*model, "--lq", SET5 / "LR_bicubic" / f"X{scale}"),
            f"from HR ({PUBLISHED_MODE[scale]})": averages(*model, "--lq-resize", PUBLISHED_MODE[scale]),
        }
        for name, figures in runs.items():
            print(f"{'x' + str(scale):>5} {name:<26} " + " ".join(f"{figures[key]:9.4f}" for key in KEYS))
        first, second = runs.values()
        largest = {key: abs(first[key] - second[key]) for key in KEYS}
        print(f"{'':>5} {'largest difference':<26} " + " ".join(f"{largest[key]:9.2g}" for key in KEYS))


if __name__ == "__main__":
    main_benchmark()
