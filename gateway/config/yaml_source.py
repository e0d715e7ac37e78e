"""YAML text -> a tree of values that remember the line they came from.

Config errors must name the file and line, so the config is composed into
`Located` nodes (PyYAML's node marks) instead of plain dicts. Duplicate keys,
which PyYAML silently accepts, are reported as problems here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class Located:
    """A YAML value and the 1-based line it starts on.

    `value` is a scalar, a `dict[str, Located]` or a `list[Located]`.
    """

    value: Any
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceError:
    """A YAML document that could not be read at all, or a duplicate key at `path`."""

    line: int | None
    message: str
    path: str = ""


def load_located(text: str) -> tuple[Located | None, list[SourceError]]:
    """Parse one YAML document into `Located` nodes.

    Returns the root (None when the text is empty or unreadable) and the
    problems found while reading it.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "malformed YAML"
        return None, [SourceError(line, f"YAML syntax error: {what}")]
    except yaml.YAMLError as exc:
        return None, [SourceError(None, f"YAML error: {exc}")]
    finally:
        loader.dispose()
    if node is None:
        return None, []
    errors: list[SourceError] = []
    return _convert(loader, node, errors, ""), errors


def _convert(loader: yaml.SafeLoader, node: yaml.Node, errors: list[SourceError], path: str
             ) -> Located:
    """Turn a composed node into `Located`, constructing scalars with YAML 1.1 rules."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, Located] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node, errors)
            key_text = str(key)
            key_line = key_node.start_mark.line + 1
            if key_text in mapping:
                errors.append(
                    SourceError(
                        key_line,
                        f"duplicate key '{key_text}' (first at line {key_lines[key_text]})",
                        f"{path}.{key_text}" if path else key_text,
                    )
                )
                continue
            mapping[key_text] = _convert(loader, value_node, errors,
                                         f"{path}.{key_text}" if path else key_text)
            key_lines[key_text] = key_line
        return Located(mapping, line, key_lines)
    if isinstance(node, yaml.SequenceNode):
        return Located([_convert(loader, item, errors, f"{path}[{index}]")
                        for index, item in enumerate(node.value)], line)
    return Located(_scalar(loader, node, errors), line)


def _scalar(loader: yaml.SafeLoader, node: yaml.Node, errors: list[SourceError]) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        errors.append(SourceError(node.start_mark.line + 1, f"bad value: {exc}"))
        return None
