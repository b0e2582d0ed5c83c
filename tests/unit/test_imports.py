"""Every module of our packages imports, and no two of them import each other round a cycle.

The graph is read from the source (``import`` and ``from`` statements anywhere in a module,
lazy ones in functions included, relative ones resolved), so a cycle hidden behind a lazy
import or a late module-level import still fails here, with its path.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("streams", "tracestore", "status", "imaging")
# Importing these runs a program (``python -m ...``); they are in the graph all the same.
ENTRY_POINTS = {"streams.__main__", "status.__main__"}


def modules() -> dict[str, Path]:
    """Module name -> source file, for every Python module of PACKAGES."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        base = ROOT / package
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules of ``known`` that ``name`` imports."""
    known = set(known)
    package = _package_of(name, path)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    out.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:  # ``from . import codec``: the submodule itself
                    out.add(sub)
                elif target in known:
                    out.add(target)
    out.discard(name)
    return out


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def extensions() -> set[str]:
    """C extension modules, known by their stubs (``imaging/_jpegenc.pyi``): nodes without edges."""
    return {".".join(p.relative_to(ROOT).with_suffix("").parts)
            for package in PACKAGES for p in (ROOT / package).rglob("*.pyi")}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods) | extensions()
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_every_module_imports() -> None:
    names = [m.name for package in PACKAGES
             for m in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}.")]
    assert len(names) > 50, names
    for name in [*PACKAGES, *names]:
        if name not in ENTRY_POINTS:
            importlib.import_module(name)


def test_no_import_cycle_between_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_graph_sees_relative_and_lazy_imports() -> None:
    graph = import_graph()
    assert "streams.cli.context" in graph["streams.cli.replay"]  # from .context import ...
    assert "streams.headers" in graph["streams.worker.app"]  # from .. import headers
    assert "tracestore.reader" in graph["status.web"]  # a lazy import in a function


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
])
def test_find_cycle_reports_the_path(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    assert find_cycle(graph) == expected
