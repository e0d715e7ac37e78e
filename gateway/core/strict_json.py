"""Strict JSON parsing, shared by the serial line parser and the consumer's decoder.

Python's `json.loads` accepts NaN, Infinity and numbers that overflow to
infinity; none of them is JSON, and none could be written back out as JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


class NonFiniteNumberError(ValueError):
    """The text holds NaN, Infinity or a number too large for a float."""


def _refuse_constant(name: str) -> Any:
    raise NonFiniteNumberError(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NonFiniteNumberError(f"number out of range {text[:20]!r}")
    return number


def loads_strict(text: str) -> Any:
    """`json.loads` that refuses NaN, Infinity and overflowing numbers.

    Raises:
        json.JSONDecodeError: not JSON at all.
        NonFiniteNumberError: a non-finite number.
        ValueError: e.g. an integer with more digits than Python converts.
        RecursionError: nesting deeper than the stack.
    """
    return _DECODER.decode(text)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def nesting_exceeds(text: str, limit: int) -> bool:
    """True when arrays and objects in `text` nest deeper than `limit`: checked before
    parsing, so a payload of a million '[' costs a scan, not a recursion."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _STRING_OR_BRACKET.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False
