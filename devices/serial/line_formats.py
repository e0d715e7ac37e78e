"""Pure parsers from one line of bytes to a record's fields.

Each parser takes one line (no terminator) and returns a dict of fields, a
`Rejected(reason, detail)` when the line is garbage, or None for a blank line
(skipped silently). Parsers never raise on input. The formats and their
reject reasons:

- `json`: one JSON object per line; `invalid_utf8`, `bad_json` (syntax,
  NaN/Infinity, nesting too deep), `not_an_object`.
- `csv`: values in the configured column order, split on one delimiter
  character (double quotes may enclose a delimiter); `invalid_utf8`,
  `bad_csv` (wrong column count, bad quoting).
- `kv`: `key=value` pairs separated by whitespace and/or commas;
  `invalid_utf8`, `bad_kv` (a token without `=`, an empty key, a repeated key).

csv and kv values are typed by `convert_value`: decimal integers become int,
finite decimal numbers float, `true`/`false` bool, anything else stays a string.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from devices.base import JsonValue, Rejected, excerpt
from devices.serial.framing import first_line
from gateway.core.strict_json import NonFiniteNumberError, loads_strict

FORBIDDEN_DELIMITERS = '\r\n"'  # what a csv delimiter may not be: a quote or a newline

Fields = dict[str, JsonValue]
ParseResult = Fields | Rejected | None
LineParser = Callable[[bytes], ParseResult]

FORMATS = ("json", "csv", "kv")

INVALID_UTF8 = "invalid_utf8"
BAD_JSON = "bad_json"
NOT_AN_OBJECT = "not_an_object"
BAD_CSV = "bad_csv"
BAD_KV = "bad_kv"

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?")
_KV_SEPARATORS = re.compile(r"[\s,]+")
_JSON_TYPE_NAMES = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
                    float: "a number", type(None): "null"}


def convert_value(text: str) -> JsonValue:
    """Type one csv or kv value.

    Args:
        text: The value as written on the line, surrounding whitespace removed.

    Returns:
        An int for a decimal integer, a float for a finite decimal number,
        a bool for `true`/`false`, otherwise the text unchanged.
    """
    if _INT.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts from a string
            return text
    if _FLOAT.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else text
    if text == "true":
        return True
    if text == "false":
        return False
    return text


def parse_json(line: bytes) -> ParseResult:
    """Parse a line holding one JSON object.

    Args:
        line: One line without its terminator.

    Returns:
        The object's members, a `Rejected`, or None for a blank line.
    """
    text = _text(line)
    if not isinstance(text, str):
        return text
    try:
        value: Any = loads_strict(text)
    except json.JSONDecodeError as exc:
        return Rejected(BAD_JSON, f"{exc.msg} at column {exc.colno}: {excerpt(text)}")
    except NonFiniteNumberError as exc:
        return Rejected(BAD_JSON, f"{exc}: {excerpt(text)}")
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return Rejected(BAD_JSON, f"{first_line(exc)}: {excerpt(text)}")
    except RecursionError:
        return Rejected(BAD_JSON, f"nested too deeply: {excerpt(text)}")
    if not isinstance(value, dict):
        kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        return Rejected(NOT_AN_OBJECT, f"expected a JSON object, found {kind}: {excerpt(text)}")
    return value


def csv_parser(columns: Sequence[str], delimiter: str = ",") -> LineParser:
    """Build a parser for delimited lines with named columns.

    Args:
        columns: The field name of each column, in order.
        delimiter: The one character separating values.

    Returns:
        A parser giving `{column: value}`, or `bad_csv` when the count differs.

    Raises:
        ValueError: If `columns` is empty or `delimiter` is not one character.
    """
    names = tuple(columns)
    if not names:
        raise ValueError("csv needs at least one column")
    if len(delimiter) != 1 or delimiter in FORBIDDEN_DELIMITERS:
        raise ValueError(f"csv delimiter must be one character other than a quote or newline, "
                         f"not {delimiter!r}")

    def parse_csv(line: bytes) -> ParseResult:
        text = _text(line)
        if not isinstance(text, str):
            return text
        try:
            rows = list(csv.reader([text], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            return Rejected(BAD_CSV, f"{first_line(exc)}: {excerpt(text)}")
        values = rows[0] if rows else []
        if len(values) != len(names):
            return Rejected(
                BAD_CSV,
                f"expected {len(names)} columns, found {len(values)}: {excerpt(text)}",
            )
        return {name: convert_value(value.strip()) for name, value in zip(names, values, strict=True)}

    return parse_csv


def parse_kv(line: bytes) -> ParseResult:
    """Parse `key=value` pairs separated by whitespace and/or commas.

    Args:
        line: One line without its terminator.

    Returns:
        The pairs as fields, a `Rejected`, or None for a blank line.
    """
    text = _text(line)
    if not isinstance(text, str):
        return text
    fields: Fields = {}
    for token in _KV_SEPARATORS.split(text):
        if not token:
            continue
        key, equals, value = token.partition("=")
        if not equals or not key:
            what = "an empty key" if equals else "no '='"
            return Rejected(BAD_KV, f"{excerpt(token)} has {what}: {excerpt(text)}")
        if key in fields:
            return Rejected(BAD_KV, f"key {excerpt(key)} repeated: {excerpt(text)}")
        fields[key] = convert_value(value)
    return fields or None


def parser_for(format_name: str, columns: Sequence[str] = (), delimiter: str = ",") -> LineParser:
    """Choose the parser for a configured format.

    Args:
        format_name: One of `FORMATS`.
        columns: The column names (csv only).
        delimiter: The value separator (csv only).

    Returns:
        The line parser.

    Raises:
        ValueError: If the format is unknown, or csv is given unusable columns or delimiter.
    """
    if format_name == "json":
        return parse_json
    if format_name == "kv":
        return parse_kv
    if format_name == "csv":
        return csv_parser(columns, delimiter)
    raise ValueError(f"unknown line format {format_name!r}; expected one of {', '.join(FORMATS)}")


def _text(line: bytes) -> str | Rejected | None:
    """The line as text; an `invalid_utf8` reject naming the bad byte offset; None if blank."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(INVALID_UTF8, f"bad byte at offset {exc.start}: {excerpt(line)}")
    return text if text.strip() else None
