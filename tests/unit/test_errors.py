"""The exception tree: every operator-facing error derives from one root, as its docstring draws."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import gateway.core.errors as errors_module
from gateway.core.errors import MqttGatewayError

REPO = Path(__file__).resolve().parents[2]


def _error_classes() -> list[tuple[str, str]]:
    """(module, class) of every public class named *Error under gateway/."""
    found = []
    for path in sorted((REPO / "gateway").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") \
                    and not node.name.startswith("_"):
                found.append((module.removesuffix(".__init__"), node.name))
    return found


def test_every_error_is_under_the_root_or_a_misuse_error() -> None:
    classes = _error_classes()
    assert len(classes) >= 8, classes
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        if not issubclass(cls, BaseException):
            continue  # a value that describes an error (yaml_source.SourceError)
        assert issubclass(cls, MqttGatewayError | ValueError | TypeError), f"{module}.{name}"


def test_the_docstring_draws_every_error_under_the_root() -> None:
    doc = errors_module.__doc__ or ""
    for module, name in _error_classes():
        cls = getattr(importlib.import_module(module), name)
        if issubclass(cls, MqttGatewayError) and cls is not MqttGatewayError:
            assert f"{name} " in doc and module in doc, f"{module}.{name} is not in the tree"
