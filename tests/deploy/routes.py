"""The HTTP routes a package serves, read from its source (aiohttp calls and decorators).

Read statically so the check needs neither a running service nor knowledge of how the
app object is built: any ``add_get("/x", ...)``, ``web.get("/x", ...)``,
``@routes.get("/x")`` or ``add_route("GET", "/x", ...)`` counts, and so does a stdlib
``http.server`` handler's ``self.path == "/x"`` (or ``path in ("/x", "/y")``).
"""

from __future__ import annotations

import ast
from pathlib import Path

_METHODS = {"get", "head", "post", "put", "patch", "delete", "view", "route"}


def _path_arg(call: ast.Call, name: str) -> str | None:
    args = [a for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if name in ("add_route", "route") and len(args) >= 2:
        value = args[1].value
    elif args:
        value = args[0].value
    else:
        return None
    assert isinstance(value, str)
    return value if value.startswith("/") else None


def _compared_paths(node: ast.Compare) -> set[str]:
    sides = [node.left, *node.comparators]
    # "path" anywhere on a side: self.path, path, self.path.split("?")[0]...
    names = {
        n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", None)
        for side in sides
        for n in ast.walk(side)
    }
    if not names & {"path", "route"}:
        return set()
    found: set[str] = set()
    for side in sides:
        items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, str) and item.value.startswith("/"):
                found.add(item.value)
    return found


def served_paths(package: Path) -> set[str]:
    paths: set[str] = set()
    for file in package.rglob("*.py"):
        tree = ast.parse(file.read_text(), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                paths |= _compared_paths(node)
                continue
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            if name in _METHODS or (name.startswith("add_") and name[4:] in _METHODS | {"route"}):
                path = _path_arg(node, name)
                if path:
                    paths.add(path)
    return paths
