"""Optional libraries and the pip extras of mqtt-gateway that bring them.

The plain install carries what the gateway needs with the serial, simulator
and w1 drivers and what the consumer needs on SQLite. A hardware driver or
the PostgreSQL backend needs one more library, installed as an extra
(`pip install 'mqtt-gateway[modbus]'`). When it is missing, the error is one
line naming the extra, e.g.

    device climate: driver modbus needs pymodbus: pip install 'mqtt-gateway[modbus]'

`missing_extra` builds that line; every place that imports an optional
library says it through `Extra.error` or `Extra.missing`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

DISTRIBUTION = "mqtt-gateway"


def missing_extra(subject: str, library: str, extra: str, detail: str = "") -> str:
    """`<subject> needs <library>: pip install 'mqtt-gateway[<extra>]'` (and why, when the
    library is there but cannot be imported)."""
    text = f"{subject} needs {library}: pip install '{DISTRIBUTION}[{extra}]'"
    return f"{text} (import {library}: {detail})" if detail else text


def _detail(library: str, cause: ImportError | None) -> str:
    """Nothing when the library is simply absent; else the first line of the import error
    (psycopg without libpq, a gpiod built for another libgpiod)."""
    if cause is None:
        return ""
    missing = cause.name if isinstance(cause, ModuleNotFoundError) else None
    if missing is not None and (missing == library or library.startswith(missing + ".")
                                or missing.startswith(library + ".")):
        return ""
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


class MissingExtra(ImportError):
    """An optional library cannot be imported; the message names the extra that brings it."""

    def __init__(self, subject: str, library: str, extra: str, detail: str = "") -> None:
        super().__init__(missing_extra(subject, library, extra, detail), name=library)
        self.extra = extra


class MissingExtras(Exception):
    """A config needs optional libraries that are not installed; `lines` says which, one
    line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Extra:
    """One extra of the distribution and the library it brings (`library`: its import name)."""

    name: str
    library: str

    def error(self, subject: str, cause: ImportError | None = None) -> MissingExtra:
        """The error to raise where importing the library failed with `cause`."""
        return MissingExtra(subject, self.library, self.name, _detail(self.library, cause))

    def missing(self, subject: str) -> str | None:
        """None when the library imports; else the one line saying which extra to install."""
        try:
            importlib.import_module(self.library)
        except ImportError as exc:
            return str(self.error(subject, exc))
        return None


POSTGRES = Extra("postgres", "psycopg")
GPIO = Extra("gpio", "gpiod")
MODBUS = Extra("modbus", "pymodbus")
I2C = Extra("i2c", "smbus2")
GPS = Extra("gps", "pynmeagps")
EXTRAS = (POSTGRES, GPIO, MODBUS, I2C, GPS)
