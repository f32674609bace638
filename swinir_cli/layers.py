"""The package's layers, bottom first: a module imports only from its own layer or the ones below it,
and never in a circle (``tests/test_architecture.py`` reads every import from the source and checks both).

- ground: values and operating-system primitives every layer may use: errors, text, bounded reads,
  durable writes, signals, the task and format tables, settings, job records, the network definition and
  the tiling geometry. Nothing here knows about devices, files of weights or batches.
- data: what turns bytes into typed values and back, and what the hardware offers: images, checkpoints,
  the registry, level estimators, devices, memory, engines.
- restoring: a loaded network applied to images (the authors' test procedure, tiled); fetching weights.
- loading: one entry point from a model request (a name, a file, a task and level) to a restorer.
- batches: jobs planned, run (serial, overlapped, devices, Ray) and reported in order; evaluation.
- command line: typer commands, options, terminal output; the package's public face.
"""

from __future__ import annotations

#: (name, modules) from the bottom up; module names are relative to ``swinir_cli``.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("ground", frozenset({
        "_version", "layers", "text", "reading", "signals", "errors", "durable", "stdout", "provenance",
        "cpu", "tasks", "tiling", "matlab_resize", "metrics", "network", "ensemble", "engines",
    })),
    ("data", frozenset({
        "imageio", "registry", "checkpoint", "estimate", "devices", "engines.openvino",
    })),
    ("restoring", frozenset({"pipeline", "download"})),
    ("loading", frozenset({"resolve"})),
    ("batches", frozenset({"batch", "recipe", "parallel", "ray_batch", "evaluate"})),
    ("command line", frozenset({
        "cli", "cli.options", "cli.output", "cli.report", "cli.restore", "cli.evaluate", "cli.models",
        "__init__", "__main__",
    })),
)  # fmt: skip
