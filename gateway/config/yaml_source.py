"""YAML text -> a tree of values that remember the line they came from.

Config errors must name the file and line, so the config is composed into
`Located` nodes (PyYAML's node marks) instead of plain dicts. Duplicate keys,
which PyYAML silently accepts, are reported as problems here.

Bounds, both checked before any Python value is built: a file of at most
MAX_CONFIG_BYTES, and a document that expands to at most MAX_EXPANDED_NODES
nodes. PyYAML composes an alias as the node it names, shared, so a few lines
of nested aliases (an "alias bomb") compose in microseconds into a graph
whose tree has billions of nodes; the tree's size is counted on the graph,
each shared node once, and a document beyond the bound is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1 << 20
MAX_EXPANDED_NODES = 100_000


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
    hint: str = ""  # what the author most likely did, for a syntax error


def read_source(path: Path) -> str:
    """The text of a config file, reading at most MAX_CONFIG_BYTES + 1 bytes (a longer
    file comes back cut, still longer than the bound, for `load_located` to refuse).

    Raises:
        OSError: the file cannot be read.
        UnicodeDecodeError: it is not UTF-8.
    """
    with path.open("rb") as file:
        data = file.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:  # a character cut in two becomes U+FFFD: 3 bytes
        return data.decode("utf-8", "replace")
    return data.decode("utf-8")


def load_located(text: str) -> tuple[Located | None, list[SourceError]]:
    """Parse one YAML document into `Located` nodes.

    Returns the root (None when the text is empty, unreadable or beyond the
    bounds) and the problems found while reading it.
    """
    if len(text) * 4 > MAX_CONFIG_BYTES and len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        return None, [SourceError(None, f"the file is larger than {MAX_CONFIG_BYTES} bytes, "
                                        "the most a config may have")]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "malformed YAML"
        opened = exc.context_mark.line + 1 if exc.context_mark is not None else None
        return None, [SourceError(line, f"YAML syntax error: {what}", "",
                                  syntax_hint(text, what, exc.context or "", line, opened))]
    except yaml.YAMLError as exc:
        return None, [SourceError(None, f"YAML error: {exc}")]
    finally:
        loader.dispose()
    if node is None:
        return None, []
    too_big = expansion_problem(node, MAX_EXPANDED_NODES)
    if too_big is not None:
        return None, [too_big]
    errors: list[SourceError] = []
    return _convert(loader, node, errors, ""), errors


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def expansion_problem(root: yaml.Node, limit: int) -> SourceError | None:
    """Why the document under `root` must not be built: its aliases expand it to more than
    `limit` nodes, or one refers to a node that contains it. None when it may be built.

    Iterative, and each shared node is counted once (its expanded size remembered), so
    the count costs as much as the composed graph, not the tree it stands for.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes whose children are being counted
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        key = id(node)
        if counted:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > limit:
                return SourceError(node.start_mark.line + 1,
                                   f"its aliases expand the document to more than {limit} "
                                   "values (an alias bomb?); write the values out instead")
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            return SourceError(node.start_mark.line + 1,
                               "an alias refers to a value that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return None
def syntax_hint(text: str, problem: str, context: str, line: int | None,
                opened: int | None) -> str:
    """What the author most likely did to cause a YAML syntax error, and the line it is on."""
    lines = text.splitlines()
    tab = next((n for n, t in enumerate(lines[:line], 1)
                if "\t" in t[:len(t) - len(t.lstrip())]), None)
    if tab is not None or "'\\t'" in problem:
        where = tab if tab is not None else line
        return f"a tab in the indentation of line {where}: YAML indents with spaces only"
    if "flow sequence" in context or "flow mapping" in context:
        pair = "[]" if "sequence" in context else "{}"
        return (f"most likely an unclosed '{pair[0]}' (opened at line {opened}): close it with "
                f"'{pair[1]}' on the same line, or write one item per line")
    if "quoted scalar" in context:
        return (f"most likely an unclosed quote (opened at line {opened}): end the value with "
                "the quote it starts with")
    if line is None or not 0 < line <= len(lines):
        return ""
    shown = _excerpt(lines[line - 1])
    if "mapping values are not allowed" in problem:
        return (f"line {line} is {shown}: most likely its indentation is deeper than a key at "
                "its level, or a value holding ': ' needs quotes")
    if "expected <block end>" in problem or "expected key" in problem \
            or "expected '-'" in problem or "block mapping" in context:
        above = sorted({_indent(t) for t in lines[:line - 1] if t.strip()
                        and not t.lstrip().startswith("#")})
        return (f"most likely the indentation: line {line} ({shown}) is indented "
                f"{_indent(lines[line - 1])} spaces, the lines above it "
                f"{', '.join(map(str, above[:6])) or 'none'}; the keys of one mapping, and the "
                "items of one list, line up")
    return f"line {line} is {shown}"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _excerpt(line: str) -> str:
    text = line.rstrip()
    return repr(text if len(text) <= 60 else text[:57] + "...")


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
