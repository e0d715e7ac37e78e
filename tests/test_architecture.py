"""The package layers, checked on the source.

Every module under gateway/ and devices/ is parsed with `ast` into an import graph
(tests/support/import_graph.py; imports under `if TYPE_CHECKING:` and inside
functions included, a package's own `__init__` is the node `pkg.__init__`). The
graph must have no cycle and no import the layer table below forbids; a
package-private module (`_name`) is imported only from inside its package;
modules stay within 400 lines and functions within 60. The same checks run on
small planted trees at the end, to show that each one fails when it should.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.import_graph import (
    Layers,
    Tree,
    Violation,
    find_cycles,
    imports_in,
    oversized,
    private_imports,
    scan,
    unplaced_modules,
    upward_imports,
)

# -- the rules ------------------------------------------------------------------------------
# Each layer (a module-name prefix) and the other layers its modules may import; ANY: all.
# Imports within a layer are free, cycles aside. `gateway.__init__` holds the version.
ANY = None
LAYERS: Layers = {
    "gateway.core": frozenset(),
    "gateway.config": frozenset({"gateway.core"}),
    "devices": frozenset({"gateway.core", "gateway.config"}),
    "gateway.store": frozenset({"gateway.core", "gateway.config"}),
    "gateway.mqtt": frozenset({"gateway.core", "gateway.config"}),
    "gateway.ops": frozenset({"gateway.core", "gateway.config", "gateway.mqtt"}),
    "gateway.edge": frozenset({"gateway.core", "gateway.config", "gateway.store", "gateway.mqtt",
                               "gateway.ops", "devices"}),
    "gateway.cloud": frozenset({"gateway.core", "gateway.config", "gateway.mqtt", "gateway.ops"}),
    "gateway.__init__": frozenset(),
    "gateway.cli": ANY,
    "gateway.__main__": ANY,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Known violations, each to be struck from this list when it is fixed. The checks skip
# them (a cycle through a listed import is not reported), and fail once an entry no
# longer occurs, so the list only shrinks. Keys: "importer -> imported", a file, or
# "file:function".
KNOWN_VIOLATIONS: frozenset[str] = frozenset()

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "devices")
HEAVY = ("prometheus_client", "sqlite_utils", "psycopg", "pymodbus", "gpiod", "smbus2")


def check(tree: Tree, known: frozenset[str] = frozenset()) -> list[Violation]:
    """Every violation of the rules above in `tree` but the `known` ones."""
    found = [*unplaced_modules(tree, LAYERS), *upward_imports(tree, LAYERS),
             *private_imports(tree), *find_cycles(tree, skip=known),
             *oversized(tree, MAX_MODULE_LINES, MAX_FUNCTION_LINES)]
    return [v for v in found if v.key not in known]


# -- the project -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def project() -> Tree:
    return scan(ROOT, PACKAGES)


def test_the_graph_holds_every_module_and_the_imports_under_type_checking(project: Tree) -> None:
    assert {"gateway.cli", "gateway.core.envelope", "devices.serial.port"} <= set(project.paths)
    assert any(imp.where == "under TYPE_CHECKING" for imp in project.imports)
    assert any(imp.where == "in a function" for imp in project.imports)


def assert_none(found: list[Violation]) -> None:
    messages = [v.message for v in found if v.key not in KNOWN_VIOLATIONS]
    assert not messages, "\n" + "\n".join(messages)


def test_every_module_is_in_a_layer(project: Tree) -> None:
    assert_none(unplaced_modules(project, LAYERS))


def test_no_import_cycles(project: Tree) -> None:
    assert_none(find_cycles(project, skip=KNOWN_VIOLATIONS))


def test_imports_follow_the_layers(project: Tree) -> None:
    assert_none(upward_imports(project, LAYERS))


def test_package_private_modules_are_imported_only_inside_their_package(project: Tree) -> None:
    assert_none(private_imports(project))


def test_modules_and_functions_stay_small(project: Tree) -> None:
    assert_none(oversized(project, MAX_MODULE_LINES, MAX_FUNCTION_LINES))


def test_every_known_violation_still_occurs(project: Tree) -> None:
    occurring = {v.key for v in check(project)}
    assert sorted(KNOWN_VIOLATIONS - occurring) == [], "fixed: strike it from KNOWN_VIOLATIONS"


@pytest.mark.parametrize("modules", [
    "gateway.cli",
    "gateway.core, gateway.config, gateway.store, gateway.mqtt, gateway.ops, gateway.edge, "
    "gateway.cloud, devices, devices.serial, devices.modbus, devices.gpio, devices.bme280",
])
def test_the_command_line_and_the_package_seams_load_no_backend_library(modules: str) -> None:
    code = f"import sys, {modules}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_each_package_exports_its_all_from_the_modules_it_names(project: Tree) -> None:
    packages = [name.removesuffix(".__init__") for name in project.paths
                if name.endswith(".__init__") and name != "gateway.__init__"]
    for package in packages:
        homes = {alias.asname or alias.name: node.module
                 for node, _ in imports_in(project.parsed[f"{package}.__init__"])
                 if isinstance(node, ast.ImportFrom) and node.module not in (None, "typing")
                 for alias in node.names}
        if package != "gateway.core":  # the one eager import, of the lazy loading itself
            del homes["lazy_exports"]
        module = importlib.import_module(package)
        assert sorted(module.__all__) == sorted(homes), package
        with pytest.raises(AttributeError):
            module.no_such_name  # noqa: B018
        for name, home in homes.items():
            assert home is not None
            assert getattr(module, name) is getattr(importlib.import_module(home), name), name


# -- planted trees: each check fails when it should ------------------------------------------

def plant(root: Path, files: dict[str, str]) -> Tree:
    """Write `files` (path -> source) under `root`, with an empty `__init__.py` in each
    package that lacks one, and scan the tree."""
    for rel, text in files.items():
        path = root / rel
        for package in [path.parent, *path.parent.parents]:
            if package == root:
                break
            package.mkdir(parents=True, exist_ok=True)
            if not (package / "__init__.py").exists():
                (package / "__init__.py").write_text("")
        path.write_text(text)
    return scan(root, PACKAGES)


def test_a_planted_upward_import_is_reported(tmp_path: Path) -> None:
    tree = plant(tmp_path, {"gateway/core/a.py": "from gateway.edge.b import thing\n",
                            "gateway/edge/b.py": "thing = 1\n"})
    assert [v.message for v in check(tree)] == [
        "gateway/core/a.py:1: gateway.core.a imports gateway.edge.b: gateway.core may import "
        "nothing of the project"]


def test_a_planted_cycle_under_type_checking_is_reported(tmp_path: Path) -> None:
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.edge.{} import X\n"
    tree = plant(tmp_path, {"gateway/edge/x.py": guarded.format("y"),
                            "gateway/edge/y.py": guarded.format("x")})
    cycles = find_cycles(tree)
    assert [v.key for v in cycles] == ["cycle gateway.edge.x -> gateway.edge.y -> gateway.edge.x"]
    assert "gateway/edge/x.py:3: gateway.edge.x imports gateway.edge.y (under TYPE_CHECKING)" \
        in cycles[0].message
    assert find_cycles(tree, skip=frozenset({"gateway.edge.y -> gateway.edge.x"})) == []


def test_packages_submodules_and_relative_imports_are_told_apart(tmp_path: Path) -> None:
    tree = plant(tmp_path, {
        "gateway/store/__init__.py": "from gateway.store.s import S\n",
        "gateway/store/s.py": "S = 1\ndef later():\n    import gateway.store\n",
        "gateway/store/t.py": "from gateway.store import s\nfrom . import S\nfrom ..core import c\n",
        "gateway/core/c.py": "",
    })
    edges = {(imp.importer, imp.target, imp.where) for imp in tree.imports}
    assert edges == {
        ("gateway.store.__init__", "gateway.store.s", ""),
        ("gateway.store.s", "gateway.store.__init__", "in a function"),
        ("gateway.store.t", "gateway.store.s", ""),
        ("gateway.store.t", "gateway.store.__init__", ""),
        ("gateway.store.t", "gateway.core.c", ""),
    }
    assert [v.key for v in find_cycles(tree)] == [
        "cycle gateway.store.__init__ -> gateway.store.s -> gateway.store.__init__"]


def test_a_private_module_imported_from_another_package_is_reported(tmp_path: Path) -> None:
    tree = plant(tmp_path, {"gateway/mqtt/_p.py": "",
                            "gateway/mqtt/link.py": "from gateway.mqtt import _p\n",
                            "gateway/edge/e.py": "import gateway.mqtt._p\n"})
    assert [v.key for v in private_imports(tree)] == ["gateway.edge.e -> gateway.mqtt._p"]


def test_oversized_modules_and_functions_and_unplaced_modules_are_reported(tmp_path: Path
                                                                         ) -> None:
    def lines(indent: int, count: int) -> str:
        return "".join(f"{' ' * indent}x = {n}\n" for n in range(count))

    tree = plant(tmp_path, {
        "gateway/edge/big.py": "\n" * (MAX_MODULE_LINES + 1),
        "gateway/edge/small.py": "\n" * MAX_MODULE_LINES,
        "gateway/edge/f.py": f"class C:\n    def long(self):\n{lines(8, MAX_FUNCTION_LINES)}"
                             f"def fits():\n{lines(4, MAX_FUNCTION_LINES - 1)}",
        "gateway/newthing.py": "",
    })
    assert sorted(v.key for v in check(tree)) == [
        "gateway.newthing", "gateway/edge/big.py", "gateway/edge/f.py:C.long"]
