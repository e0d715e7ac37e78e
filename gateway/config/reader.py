"""Reading typed values out of `Located` YAML, collecting every problem.

A `MapReader` wraps one mapping at a dotted key path. Each getter returns a
typed value or a default and, when the value is wrong, records a `Problem`
naming the file, line, key path, what was expected and what was found.
`finish()` rejects the keys nobody asked for, with a did-you-mean. Nothing
here raises for bad input: the caller decides what to do with the list.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from gateway.config.yaml_source import Located
from gateway.core.redact import mask_secrets
from gateway.core.units import parse_duration, parse_size

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a mapping",
    list: "a list",
    type(None): "nothing (null)",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file."""

    file: str
    line: int | None
    path: str
    expected: str
    found: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.path or '(top level)'}: expected {self.expected}; found {self.found}"
        return mask_secrets(f"{text} ({self.hint})" if self.hint else text)


def describe(value: object) -> str:
    """A short, quoted description of a found value and its YAML type."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = mask_secrets(repr(value))  # before it is cut short, which could cut a mask off
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_TYPE_NAMES.get(type(value), type(value).__name__)})"


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`did you mean 'x'?` for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def join_path(base: str, key: str | int) -> str:
    """`devices[0]` + `streams` -> `devices[0].streams`; ints become `[n]`."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


class MapReader:
    """Typed access to one YAML mapping, recording problems instead of raising."""

    def __init__(self, node: Located, path: str, file: str, problems: list[Problem]) -> None:
        self.node = node
        self.path = path
        self.file = file
        self.problems = problems
        self._asked: set[str] = set()
        self._map: dict[str, Located] = node.value if isinstance(node.value, dict) else {}

    # -- reporting ---------------------------------------------------------
    def problem(
        self, key: str | None, expected: str, found: str, hint: str = "", line: int | None = None
    ) -> None:
        """Record a problem about `key` (or about this mapping when key is None)."""
        if line is None:
            line = self._line_of(key) if key is not None else self.node.line
        path = join_path(self.path, key) if key is not None else self.path
        self.problems.append(Problem(self.file, line, path, expected, found, hint))

    def _line_of(self, key: str) -> int:
        located = self._map.get(key)
        return located.line if located is not None else self.node.line

    def has(self, key: str) -> bool:
        """True when the key is present (and marks it as known)."""
        self._asked.add(key)
        return key in self._map

    def raw(self, key: str) -> Located | None:
        """The located value under key, or None; marks the key as known."""
        self._asked.add(key)
        return self._map.get(key)

    def finish(self) -> None:
        """Report keys that no getter asked for."""
        for key, located in self._map.items():
            if key in self._asked:
                continue
            hint = did_you_mean(key, sorted(self._asked))
            known = ", ".join(sorted(self._asked))
            self.problems.append(
                Problem(
                    self.file,
                    self.node.key_lines.get(key, located.line),
                    join_path(self.path, key),
                    f"one of the known keys ({known})",
                    f"unknown key '{key}'",
                    hint,
                )
            )

    # -- getters -----------------------------------------------------------
    def _present(self, key: str, required: bool, expected: str) -> Located | None:
        located = self.raw(key)
        if located is None or located.value is None:
            if required:
                self.problem(key, expected, "nothing (the key is missing)")
            return None
        return located

    def string(
        self,
        key: str,
        *,
        required: bool = False,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        expected: str = "a string",
    ) -> str | None:
        """A string value, optionally matching a pattern described by `expected`."""
        located = self._present(key, required, expected)
        if located is None:
            return default
        value = located.value
        if not isinstance(value, str):
            self.problem(key, expected, describe(value))
            return default
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(key, expected, describe(value))
            return default
        return value

    def choice(
        self, key: str, choices: Sequence[str], *, required: bool = False, default: str | None = None
    ) -> str | None:
        """One of a fixed set of strings, with a did-you-mean on a near miss."""
        expected = "one of " + ", ".join(choices)
        located = self._present(key, required, expected)
        if located is None:
            return default
        value = located.value
        if not isinstance(value, str) or value not in choices:
            hint = did_you_mean(str(value), choices) if isinstance(value, str) else ""
            self.problem(key, expected, describe(value), hint)
            return default
        return value

    def integer(
        self,
        key: str,
        *,
        required: bool = False,
        default: int | None = None,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """An integer within optional bounds."""
        expected = _bounded("an integer", minimum, maximum)
        located = self._present(key, required, expected)
        if located is None:
            return default
        value = located.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, expected, describe(value))
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.problem(key, expected, describe(value))
            return default
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        """A true/false value."""
        located = self._present(key, False, "true or false")
        if located is None:
            return default
        if not isinstance(located.value, bool):
            self.problem(key, "true or false", describe(located.value))
            return default
        return located.value

    def size(
        self, key: str, *, default: int, minimum: int = 0, maximum: int | None = None
    ) -> int:
        """A byte size such as `256MiB`, `64KB` or `1000`."""
        expected = _bounded("a size such as 256MiB, 64KB or 4096", minimum, maximum, fmt=_size_text)
        located = self._present(key, False, expected)
        if located is None:
            return default
        parsed = parse_size(located.value)
        if parsed is None or parsed < minimum or (maximum is not None and parsed > maximum):
            self.problem(key, expected, describe(located.value))
            return default
        return parsed

    def duration(
        self, key: str, *, default: float, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        """A duration such as `200ms`, `5s`, `2m` or a bare number of seconds."""
        expected = _bounded("a duration such as 200ms, 5s or 2m", minimum, maximum, "s")
        located = self._present(key, False, expected)
        if located is None:
            return default
        parsed = parse_duration(located.value)
        if parsed is None or parsed < minimum or (maximum is not None and parsed > maximum):
            self.problem(key, expected, describe(located.value))
            return default
        return parsed

    def mapping(self, key: str, *, required: bool = False) -> MapReader | None:
        """A nested mapping as its own reader (the caller must `finish()` it)."""
        located = self._present(key, required, "a mapping")
        if located is None:
            return None
        if not isinstance(located.value, dict):
            self.problem(key, "a mapping", describe(located.value))
            return None
        return MapReader(located, join_path(self.path, key), self.file, self.problems)

    def items(self, key: str, *, required: bool = False) -> Iterator[tuple[str, Located]]:
        """The entries of a list as (path, located) pairs; reports a non-list."""
        located = self._present(key, required, "a list")
        if located is None:
            return
        if not isinstance(located.value, list):
            self.problem(key, "a list", describe(located.value))
            return
        base = join_path(self.path, key)
        for index, item in enumerate(located.value):
            yield join_path(base, index), item

    def string_list(self, key: str, *, required: bool = False) -> list[str] | None:
        """A list of non-empty strings."""
        located = self._present(key, required, "a list of strings")
        if located is None:
            return None
        if not isinstance(located.value, list) or not located.value:
            self.problem(key, "a non-empty list of strings", describe(located.value))
            return None
        out: list[str] = []
        for index, item in enumerate(located.value):
            if not isinstance(item.value, str) or not item.value:
                self.problems.append(
                    Problem(
                        self.file,
                        item.line,
                        join_path(join_path(self.path, key), index),
                        "a non-empty string",
                        describe(item.value),
                    )
                )
                continue
            out.append(item.value)
        return out

    def child(self, path: str, located: Located, expected: str = "a mapping") -> MapReader | None:
        """A reader for a list entry that must be a mapping."""
        if not isinstance(located.value, dict):
            self.problems.append(
                Problem(self.file, located.line, path, expected, describe(located.value))
            )
            return None
        return MapReader(located, path, self.file, self.problems)


def _number_text(value: float) -> str:
    """`1048576` as is (`:g` alone would print the lossy `1.04858e+06`), `0.1` as `0.1`."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _size_text(value: float) -> str:
    """A byte count in the units a config uses: `1MiB`, `256KiB`, `300`."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= factor and value % factor == 0:
            return f"{int(value) // factor}{unit}"
    return _number_text(value)


def _bounded(
    what: str,
    minimum: float | None,
    maximum: float | None,
    suffix: str = "",
    fmt: Callable[[float], str] = _number_text,
) -> str:
    if minimum is not None and maximum is not None:
        return f"{what} from {fmt(minimum)}{suffix} to {fmt(maximum)}{suffix}"
    if minimum is not None and minimum > 0:
        return f"{what} of at least {fmt(minimum)}{suffix}"
    if maximum is not None:
        return f"{what} of at most {fmt(maximum)}{suffix}"
    return what
