"""No import circles between the project's own modules (issue 17).

Every module of core/, hostapp/ and plugins/ is parsed (never imported): each ``import`` and
``from ... import``, at module level or inside a function, relative ones resolved, is an edge
to the project module it names (``from pkg import mod`` names the submodule ``pkg.mod`` when
there is one, else ``pkg``). A package's ``__init__`` is a module like any other. The test
fails naming every cycle it finds: a dependency must point one way (domain never imports web
or CLI; a lower layer tells a higher one through a hook), not be hidden inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "hostapp", "plugins")


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _owner(name: str, modules) -> str | None:
    """The project module ``name`` is, or the package it is in (``core.x.y`` -> ``core.x``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str, path: Path, modules) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            owner = _owner(target, modules)
            if owner and owner != name:
                found.add(owner)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _path(graph, component) -> str:
    """One concrete loop through the component, for the failure message: a -> b -> ... -> a."""
    members = set(component)
    start = component[0]
    seen, trail, node = {start: 0}, [start], start
    while True:
        node = min(t for t in graph[node] if t in members)
        if node in seen:
            return " -> ".join(trail[seen[node] :] + [node])
        seen[node] = len(trail)
        trail.append(node)


def test_the_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    modules = {"pkg": None, "pkg.one": None, "pkg.two": None}
    one = tmp_path / "one.py"
    one.write_text("def f():\n    from . import two\n")
    assert imports_of("pkg.one", one, modules) == {"pkg.two"}
    one.write_text("from pkg.two import thing\nimport os\n")
    assert imports_of("pkg.one", one, modules) == {"pkg.two"}


def test_no_import_circles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(
        f"  {len(c)} modules ({', '.join(c)}), e.g. {_path(graph, c)}" for c in found
    )
