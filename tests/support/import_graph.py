"""An import graph of a source tree, built with `ast`, and the checks run on it.

`scan` parses every module of the given packages; each import statement becomes
edges to the modules it loads: those under `if TYPE_CHECKING:` and inside
functions too. A package's own `__init__` is the node `pkg.__init__`: importing
a package imports it, and `from pkg import name` imports submodule `pkg.name`
when there is one. The checks return `Violation`s keyed so that a test can
list known ones; tests/test_architecture.py holds the project's rules.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# A layer's name -> the other layers its modules may import (None: any).
Layers = dict[str, frozenset[str] | None]


@dataclass(frozen=True)
class Import:
    """One import statement's edge: `importer` loads module `target`."""

    importer: str
    target: str
    path: str
    line: int
    where: str  # "", "under TYPE_CHECKING" or "in a function"

    def __str__(self) -> str:
        where = f" ({self.where})" if self.where else ""
        return f"{self.path}:{self.line}: {self.importer} imports {self.target}{where}"


@dataclass(frozen=True)
class Violation:
    """One broken rule: `key` names it for a list of known ones, `message` says where."""

    key: str
    message: str


@dataclass(frozen=True)
class Tree:
    """The modules of a source tree (by name: the path from the root, the number of lines,
    the parsed module) and the imports between them."""

    paths: dict[str, str]
    lines: dict[str, int]
    parsed: dict[str, ast.Module]
    imports: list[Import]


# -- the graph -------------------------------------------------------------------------------

def scan(root: Path, packages: tuple[str, ...]) -> Tree:
    """Parse every module of `packages` under `root` and resolve its imports."""
    paths: dict[str, str] = {}
    lines: dict[str, int] = {}
    parsed: dict[str, ast.Module] = {}
    for package in packages:
        for file in sorted((root / package).rglob("*.py")):
            rel = file.relative_to(root)
            name = ".".join(rel.with_suffix("").parts)
            text = file.read_text(encoding="utf-8")
            paths[name], lines[name] = rel.as_posix(), len(text.splitlines())
            parsed[name] = ast.parse(text, filename=str(rel))
    modules = set(paths)
    imports = [Import(name, target, paths[name], node.lineno, where)
               for name, tree in parsed.items()
               for node, where in imports_in(tree)
               for target in _targets(node, name, modules)]
    return Tree(paths, lines, parsed, imports)


def imports_in(node: ast.AST, where: str = "") -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement under `node`, with where it is (see `Import.where`)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, where
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for stmt in node.body:
            yield from imports_in(stmt, "under TYPE_CHECKING")
        for stmt in node.orelse:
            yield from imports_in(stmt, where)
        return
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and not where:
        where = "in a function"
    for child in ast.iter_child_nodes(node):
        yield from imports_in(child, where)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module(name: str, modules: set[str]) -> str | None:
    """The module `name` is: itself, or the `__init__` of the package it names."""
    for candidate in (name, f"{name}.__init__"):
        if candidate in modules:
            return candidate
    return None


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module an import of `name` loads (its longest prefix that is one), or None
    for a name outside the tree."""
    parts = name.split(".")
    while parts:
        found = _module(".".join(parts), modules)
        if found is not None:
            return found
        parts.pop()
    return None


def _targets(node: ast.Import | ast.ImportFrom, importer: str, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        found = [_resolve(alias.name, modules) for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: from the importer's package, up level - 1 packages
            package = importer.split(".")[:-1]
            package = package[:len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        # `from pkg import name` imports submodule pkg.name when there is one, else pkg.
        found = [_module(f"{base}.{alias.name}", modules) or _resolve(base, modules)
                 for alias in node.names]
    return sorted({target for target in found if target is not None and target != importer})


# -- the checks ------------------------------------------------------------------------------

def layer_of(module: str, layers: Layers) -> str | None:
    """The layer of `module`: the longest key of `layers` it is or lies under."""
    matches = [key for key in layers if module == key or module.startswith(key + ".")]
    return max(matches, key=len, default=None)


def unplaced_modules(tree: Tree, layers: Layers) -> list[Violation]:
    return [Violation(name, f"{path}: {name} is in no layer of LAYERS")
            for name, path in tree.paths.items() if layer_of(name, layers) is None]


def upward_imports(tree: Tree, layers: Layers) -> list[Violation]:
    """Imports of another layer than those the importer's layer may import."""
    found = []
    for imp in tree.imports:
        source, target = layer_of(imp.importer, layers), layer_of(imp.target, layers)
        if source is None or target is None or source == target:
            continue
        allowed = layers[source]
        if allowed is not None and target not in allowed:
            may = ", ".join(sorted(allowed)) or "nothing of the project"
            found.append(Violation(f"{imp.importer} -> {imp.target}",
                                   f"{imp}: {source} may import {may}"))
    return found


def private_imports(tree: Tree) -> list[Violation]:
    """Imports of a module named `_name` (or under a package so named) from outside the
    package that holds it."""
    found = []
    for imp in tree.imports:
        parts = imp.target.split(".")
        private = next((i for i, part in enumerate(parts)
                        if part.startswith("_") and part not in ("__init__", "__main__")), None)
        if private is None:
            continue
        owner = ".".join(parts[:private])
        if not imp.importer.startswith(owner + "."):
            found.append(Violation(f"{imp.importer} -> {imp.target}",
                                   f"{imp}: private to {owner}"))
    return found


def find_cycles(tree: Tree, skip: frozenset[str] = frozenset()) -> list[Violation]:
    """One shortest cycle through each group of modules that import each other, leaving
    out the imports listed in `skip`."""
    first: dict[tuple[str, str], Import] = {}
    for imp in tree.imports:
        if f"{imp.importer} -> {imp.target}" not in skip:
            first.setdefault((imp.importer, imp.target), imp)
    graph: dict[str, set[str]] = {}
    for source, target in first:
        graph.setdefault(source, set()).add(target)
    found = []
    for group in _strongly_connected(graph):
        cycle = _cycle_through(group[0], graph, set(group))
        steps = "".join(f"\n    {first[edge]}" for edge in itertools.pairwise(cycle))
        text = " -> ".join(cycle)
        among = f" (of the {len(group)} modules {', '.join(group)})" if len(group) > len(cycle) - 1 else ""
        found.append(Violation(f"cycle {text}", f"import cycle {text}{among}:{steps}"))
    return found


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _cycle_through(start: str, graph: dict[str, set[str]], group: set[str]) -> list[str]:
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start} is on no cycle")


def oversized(tree: Tree, max_module_lines: int, max_function_lines: int) -> list[Violation]:
    """Modules over `max_module_lines` lines and functions over `max_function_lines`."""
    found = []
    for name, parsed in tree.parsed.items():
        path, lines = tree.paths[name], tree.lines[name]
        if lines > max_module_lines:
            found.append(Violation(path, f"{path}: {lines} lines (at most {max_module_lines})"))
        for qualname, node in _functions(parsed):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > max_function_lines:
                found.append(Violation(f"{path}:{qualname}", f"{path}:{node.lineno}: {qualname} "
                                       f"is {length} lines (at most {max_function_lines})"))
    return found


def _functions(node: ast.AST, prefix: str = ""
               ) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)
