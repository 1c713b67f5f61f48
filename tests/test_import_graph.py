"""The layers of harness/ (issue 19): no import cycle between its modules, function-level imports
included (they hide a cycle from Python, not from a reader); the local mesh imports nothing of the
Kubernetes backends; the Backend interface imports nothing of any backend.

Read from the source with ast, so every import counts, whether or not it has run yet."""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Imports under `if TYPE_CHECKING:` run only in the type checker: they are no runtime edge."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            ids |= {id(n) for n in ast.walk(node)}
    return ids


def import_graph(root: Path = HARNESS) -> dict[str, set[str]]:
    modules = {_module_name(p, root): p for p in root.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules else None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                resolved = resolve(target) if target.startswith("harness") else None
                # Importing a.b.c runs a/__init__ and a/b/__init__ first: those are edges too.
                while resolved:
                    if resolved in modules and resolved != name and not name.startswith(resolved + "."):
                        graph[name].add(resolved)
                    resolved = resolved.rsplit(".", 1)[0] if "." in resolved else None
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path):
    pkg = tmp_path / "harness"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from harness.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from harness import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness import a\n")
    graph = import_graph(pkg)
    assert graph["harness.sub.b"] == {"harness.a"} and graph["harness.c"] == set()
    assert cycles(graph) == [["harness.a", "harness.sub.b"]]


def test_importing_a_submodule_imports_its_package_first(tmp_path):
    """Python runs a package's __init__ before any module of it: a package whose __init__ imports
    kind.py is in a cycle with whatever kind.py imports that comes back into the package."""
    pkg = tmp_path / "harness"
    (pkg / "backends").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "backends" / "__init__.py").write_text("def make():\n    from harness.backends import kind\n")
    (pkg / "backends" / "kind.py").write_text("from harness import images\n")
    (pkg / "backends" / "tools.py").write_text("")
    (pkg / "images.py").write_text("from harness.backends import tools\n")
    graph = import_graph(pkg)
    assert graph["harness.images"] == {"harness.backends.tools", "harness.backends"}
    assert cycles(graph) == [["harness.backends", "harness.backends.kind", "harness.images"]]


def test_no_import_cycle_in_the_harness():
    assert cycles(import_graph()) == []


def test_the_local_mesh_imports_nothing_of_the_kubernetes_backends():
    graph = import_graph()
    wrong = {m: sorted(t for t in ts if t.startswith("harness.backends")) for m, ts in graph.items()}
    assert {m: ts for m, ts in wrong.items() if m.startswith("harness.local") and ts} == {}


def test_the_backend_interface_imports_no_backend():
    graph = import_graph()
    assert not [t for t in graph["harness.backend"] if t.startswith(("harness.local", "harness.backends"))]
