"""What every driver produces and the sink it hands it to.

A driver reads one device and turns what it reads into `Record`s: the field
values taken at one instant. It hands each record, and each piece of input it
had to reject, to a `RecordSink` owned by the pipeline. A driver never dies of
bad input or of a device that went away: it counts, logs once, and goes on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.core.envelope import JsonValue

__all__ = ["EXCERPT_BYTES", "DeviceState", "DriverRun", "JsonValue", "Record", "RecordSink",
           "Rejected", "excerpt"]

_REASON = re.compile(r"[a-z][a-z0-9_]*")
EXCERPT_BYTES = 40



@dataclass(frozen=True, slots=True)
class Record:
    """Field values read from a device at one instant.

    `ts` is the time the values were taken, in seconds since the Unix epoch (UTC).
    A `partial` record carries only the fields read at that instant (one
    polled register, one GPS sentence): streams whose field it lacks are
    skipped, not counted as `missing_field`.
    """

    ts: float
    fields: Mapping[str, JsonValue]
    partial: bool = False


class RecordSink(Protocol):
    """Where a driver delivers what it read."""

    def record(self, record: Record) -> None:
        """Accept one record; never blocks, never raises."""

    def rejected(self, reason: str, detail: str) -> None:
        """Count one piece of input dropped for `reason` (a short snake_case word)."""

    def device_state(self, up: bool, detail: str) -> None:
        """Report that the device became reachable (up) or went away."""


class DeviceState:
    """What a driver last told its sink about its device: repeats are not passed on, so a
    device that stays away is reported down once, not at every retry."""

    def __init__(self, sink: RecordSink) -> None:
        self._sink = sink
        self.up: bool | None = None

    def report(self, up: bool, detail: str) -> bool:
        """Tell the sink when the state changed; True when it did."""
        if up == self.up:
            return False
        self.up = up
        self._sink.device_state(up, detail)
        return True


# A running driver: a coroutine that reads until cancelled.
DriverRun = Callable[[RecordSink], Coroutine[Any, Any, None]]

@dataclass(frozen=True, slots=True)
class Rejected:
    """Input that was dropped: `reason` is a snake_case word, `detail` a short hint."""

    reason: str
    detail: str

    def __post_init__(self) -> None:
        if not _REASON.fullmatch(self.reason):
            raise ValueError(f"reject reason must be a snake_case word, not {self.reason!r}")


def excerpt(data: bytes | str, limit: int = EXCERPT_BYTES) -> str:
    """`repr` of at most `limit` leading bytes or characters, with `...` when cut.

    Args:
        data: The offending input.
        limit: How many bytes or characters to quote.

    Returns:
        A short printable quotation in which control bytes are visible.
    """
    if len(data) <= limit:
        return repr(data)
    return repr(data[:limit]) + "..."
