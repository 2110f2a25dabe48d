"""The package's layout, read from the source: imports point down, never in a circle.

Layers, lowest first (a module may import its own package and the layers below it):
core <- ptr <- data, regularizers <- model <- tracking <- run, results <- the entry point.
``results`` reads run folders and is never imported by a run; ``core`` imports nothing of the
package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = "ptr_lightning"
RANK = {
    "core": 0,
    "ptr": 1,
    "data": 2,
    "regularizers": 2,
    "model": 3,
    "tracking": 4,
    "run": 5,
    "results": 5,
    "__main__": 6,
}
MAX_TOP_LEVEL = 12
MAX_FUNCTION_LINES = 50
LONG_REASON = "Long because"  # a longer function says why in its docstring


def modules() -> dict[str, Path]:
    found = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(module: str, path: Path) -> set[str]:
    """The package's modules that ``module`` imports (at any place in the file)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + [base] * bool(base))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}


def owner(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for module, path in known.items():
        targets = {owner(name, known) for name in imported(module, path)}
        edges[module] = {t for t in targets if t and t != module and t != PACKAGE}
    return edges


def layer(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_imports_point_down_the_layers():
    upward = []
    for module, targets in graph().items():
        if module == PACKAGE:
            continue
        source = layer(module)
        for target in targets:
            if layer(target) != source and RANK[layer(target)] >= RANK[source]:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_every_layer_is_known_and_the_top_level_stays_small():
    top = sorted(p.name for p in (SRC / PACKAGE).iterdir() if p.name != "__pycache__")
    assert len(top) <= MAX_TOP_LEVEL, top
    unknown = {layer(m) for m in modules() if m != PACKAGE} - RANK.keys()
    assert not unknown, f"modules outside the known layers: {unknown}"


def test_functions_are_short_or_say_why():
    long = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES and LONG_REASON not in (ast.get_docstring(node) or ""):
                long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
