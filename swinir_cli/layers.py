"""The package's layers, bottom first: a module imports only from its own layer or the ones below it,
and never in a circle (``tests/test_architecture.py`` reads every import from the source, lazy and
type-only ones included, and checks both). The modules stay flat under ``swinir_cli`` so that the import
paths users and scripts know (``swinir_cli.pipeline``, ``swinir_cli.download``) keep working; this table
is the map.

- ground: values and primitives every layer may use, knowing nothing of devices, weights files or
  batches: errors, text, bounded reads, durable writes, signals, the tables of tasks, formats and engines,
  the settings, job records, the network definition, the tiling geometry and shape buckets, metrics.
- data: bytes to typed values and back, and what the hardware offers: images, checkpoints, the registry,
  level estimators, devices, memory.
- engines and fetching: the engines that run the network, and getting verified weights into the cache.
- restoring: a loaded network applied to images as the authors test them, tiled.
- loading: one entry point from a model request (a name, a file, a task and level) to a restorer.
- batches: jobs planned, run (serial, overlapped, devices, Ray) and reported in order; evaluation.
- command line: typer commands, options and the one output object; the package's public face.

A table refers to code of a higher layer only by name (``lazy.FunctionRef``, as the tasks name their
estimators and the engine table its engines), so reading a table never imports what it lists.
"""

from __future__ import annotations

#: (name, modules) from the bottom up; module names are relative to ``swinir_cli``.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("ground", frozenset({
        "_version", "layers", "lazy", "text", "reading", "signals", "errors", "durable", "stdout",
        "provenance", "cpu", "tasks", "formats", "settings", "engines", "jobs", "tiling", "buckets",
        "matlab_resize", "metrics", "network", "ensemble", "download_events", "watchdog",
    })),
    ("data", frozenset({"imageio", "registry", "checkpoint", "estimate", "devices", "memory"})),
    ("engines and fetching", frozenset({
        "engines.torch_eager", "engines.openvino", "engines.compiled", "transfer", "hub", "cache_records",
        "cache_checks", "download",
    })),
    ("restoring", frozenset({"pipeline"})),
    ("loading", frozenset({"resolve"})),
    ("batches", frozenset({"batch", "runners", "recipe", "parallel", "ray_batch", "evaluate"})),
    ("command line", frozenset({
        "cli", "cli.options", "cli.output", "cli.report", "cli.restore", "cli.evaluate", "cli.models",
        "__init__", "__main__",
    })),
)  # fmt: skip
