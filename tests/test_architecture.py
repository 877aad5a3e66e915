"""The engine's shape holds: no import cycle among samtrack's modules and no layer importing a higher
one (module- and function-level imports; TYPE_CHECKING-only imports excluded)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "samtrack"
# Layers from the bottom: a module may import its own layer or lower ones only.
LAYERS = {"errors": 0, "io": 1, "models": 2, "tracking": 3, "eval": 3, "batch": 4, "app": 4,
          "commands": 5, "cli": 6, "demo": 6, "__main__": 6}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("samtrack"):
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("samtrack")]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != "samtrack":  # the package root: __version__ and lazy public names
                found.add(name)
    return found


def test_no_import_cycle_and_no_upward_import():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    layer = lambda m: LAYERS.get(m.split(".")[1], 9) if m.count(".") else 9
    upward = sorted((a, b) for a, deps in graph.items() for b in deps if layer(b) > layer(a))
    assert upward == []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, "import cycle: " + " -> ".join(path + [m, d])
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
