"""The project's import graph, read from the source with ast, and the rules it must keep.

Rules (README "Architecture", ``pydoc ncdma``): no cycle anywhere; inside ncdma a module
imports only from its own component (top-level subpackage or module) or from a component of
a lower rank, never from another component of the same rank; between the top folders,
plugin (ncdma) imports none of the others, lab imports only ncdma, bench and tests may
import ncdma and lab, and nothing outside tests imports tests.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Components of ncdma from the top; a higher rank may import a lower one. Components of
# one layer share a rank and may not import each other; core and base are ordered.
RANKS: dict[str, float] = {
    "ncdma.__main__": 7,  # ``python -m ncdma``: runs the cli
    "ncdma.cli": 6, "ncdma.hook": 6, "ncdma.wrapper": 6,
    "ncdma.guard": 5, "ncdma.migrate": 5,
    "ncdma.host": 4, "ncdma.qmp": 4, "ncdma.virt": 4, "ncdma.store": 4,
    "ncdma.model": 3.2, "ncdma.kvm": 3.1, "ncdma.linux": 3.0,
    "ncdma.logs": 1.2, "ncdma.settings": 1.1, "ncdma.standin": 1.05, "ncdma.errors": 1.0,
    "ncdma": 0,  # the package itself: __version__
}
# Top folders (by their first module name) and the folders each may import.
FOLDERS: dict[str, frozenset[str]] = {
    "ncdma": frozenset(),
    "lab": frozenset({"ncdma"}),
    "bench": frozenset({"ncdma", "lab"}),
    "tests": frozenset({"ncdma", "lab"}),
}
# Where each top folder's modules live (ncdma under plugin/).
ROOTS = {"ncdma": REPO / "plugin" / "ncdma", "lab": REPO / "lab", "bench": REPO / "bench",
         "tests": REPO / "tests"}

Graph = Mapping[str, frozenset[str]]


def module_name(path: Path, root: Path, top: str) -> str:
    """The dotted name of the module in ``path`` below the folder ``root`` of package ``top``."""
    parts = [top, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, name: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """Every module the module ``name`` imports, anywhere in it (functions, TYPE_CHECKING)."""
    modules = set(known)
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return found


def read_graph(roots: Mapping[str, Path] = ROOTS) -> dict[str, frozenset[str]]:
    """Module -> the project's modules it imports, for every .py file below ``roots``."""
    files = {module_name(path, root, top): path
             for top, root in roots.items() for path in sorted(root.rglob("*.py"))}
    graph: dict[str, frozenset[str]] = {}
    for name, path in files.items():
        imported = _imported(ast.parse(path.read_text(), str(path)), name,
                             path.name == "__init__.py", files)
        targets = {_nearest(module, files) for module in imported
                   if module.split(".")[0] in roots}
        graph[name] = frozenset(target for target in targets if target is not None)
    return graph


def _nearest(module: str, known: Mapping[str, Path]) -> str | None:
    """``module`` if it is a known module, else its nearest known parent package."""
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def component(module: str, ranks: Mapping[str, float] = RANKS) -> str | None:
    """The component of ncdma that ``module`` belongs to, or None when it is not ncdma's."""
    parts = module.split(".")
    if parts[0] != "ncdma":
        return None
    return ".".join(parts[:2]) if len(parts) > 1 else "ncdma"


def upward(graph: Graph, ranks: Mapping[str, float] = RANKS,
           folders: Mapping[str, frozenset[str]] = FOLDERS) -> list[str]:
    """Every import that breaks the layer rule inside ncdma or the rule between top folders."""
    problems = []
    for source in sorted(graph):
        for target in sorted(graph[source]):
            problem = _check(source, target, ranks, folders)
            if problem:
                problems.append(f"{source} -> {target}: {problem}")
    return problems


def _check(source: str, target: str, ranks: Mapping[str, float],
           folders: Mapping[str, frozenset[str]]) -> str:
    top, target_top = source.split(".")[0], target.split(".")[0]
    if top != target_top:
        return "" if target_top in folders.get(top, frozenset()) else \
            f"{top}/ may not import {target_top}/"
    here, there = component(source), component(target)
    if here is None or there is None or here == there:
        return ""
    for name in (here, there):
        if name not in ranks:
            return f"{name} has no layer: add it to RANKS and to the architecture docs"
    if ranks[here] > ranks[there]:
        return ""
    return "import from a higher layer" if ranks[here] < ranks[there] else \
        "import between components of one layer"
