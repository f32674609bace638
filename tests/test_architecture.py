"""The package's layers, read from its source: every import goes down (or sideways within a layer), and
no modules import each other in a circle.

The import graph is taken from the syntax tree of every module under ``swinir_cli/``, imports inside
functions and under ``TYPE_CHECKING`` included: a lazy import is still a dependency, and a type named from
a higher layer is knowledge a lower layer should not have. README's "Code layout" describes the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

from swinir_cli.layers import LAYERS

PACKAGE = Path(__file__).resolve().parents[1] / "swinir_cli"


def module_name(path: Path) -> str:
    """``swinir_cli/cli/restore.py`` -> ``cli.restore``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "__init__"


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project's modules ``path`` imports (``from . import x`` counts as module ``x``)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" and name != "__init__" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.split(".")[0] == "swinir_cli":
                stem = node.module.removeprefix("swinir_cli").lstrip(".")
            else:
                continue
            for alias in node.names:
                child = f"{stem}.{alias.name}" if stem else alias.name
                found.add(child if child in known else stem or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "swinir_cli":
                    found.add(alias.name.removeprefix("swinir_cli").lstrip(".") or "__init__")
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, known) for path in paths}


def layer_of() -> dict[str, int]:
    return {module: level for level, (_, modules) in enumerate(LAYERS) for module in modules}


def test_every_module_has_exactly_one_layer() -> None:
    listed = [module for _, modules in LAYERS for module in modules]
    assert len(listed) == len(set(listed)), "a module is listed in two layers"
    graph = import_graph()
    assert sorted(set(graph) - set(listed)) == [], "modules without a layer: add them to swinir_cli/layers.py"
    assert sorted(set(listed) - set(graph)) == [], "layers.py lists modules that do not exist"


def test_no_module_imports_from_a_higher_layer() -> None:
    level = layer_of()
    upward = [
        f"{module} ({LAYERS[level[module]][0]}) imports {target} ({LAYERS[level[target]][0]})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if level[target] > level[module]
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert [" -> ".join(cycle) for cycle in cycles] == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The graph is only as good as its parser: a function-level ``from ..x import y`` and a
    ``from . import z`` are edges."""
    graph = import_graph()
    assert "cli.options" in graph["cli.restore"]  # from . import options as o
    assert "batch" in graph["cli.restore"]  # from ..batch import ...
