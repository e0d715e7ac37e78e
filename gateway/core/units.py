"""Parsing of human sizes ("256MiB") and durations ("200ms", "5s", "2m")."""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(value: object) -> int | None:
    """Bytes for `256MiB`, `64 KB`, `1000` (bytes); None when it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _SIZE.match(value)
    if match is None:
        return None
    unit = (match.group(2) or "B").lower()
    # Exact decimal arithmetic: float would make 2.01KB 2009 bytes.
    return int(Fraction(match.group(1)) * _SIZE_FACTORS[unit])


def parse_duration(value: object) -> float | None:
    """Seconds for `200ms`, `5s`, `2m`, `1h` or a bare number of seconds."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int too big for a float
            return None
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            return None
        seconds = float(match.group(1)) * _DURATION_FACTORS[match.group(2) or "s"]
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def format_bytes(count: int) -> str:
    """`1536` -> `1.5 KiB`, for status output."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        # Compare what will be printed: 1048575 bytes is 1.0 MiB, not 1024.0 KiB.
        if (size if unit == "B" else round(size, 1)) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
