"""Report by exception: which readings of a stream are worth sending.

A stream configured with `deadband`, `min_interval` and/or `max_interval`
gets one `ExceptionFilter`. It is pure: values and their timestamps in, a
yes/no out; no clock, no timers. The rules, applied to each new reading in
order against the last reading that was *sent*:

1. The first reading is always sent.
2. A reading whose timestamp is earlier than the last sent one (the wall
   clock was set back) is sent and restarts the rules from it.
3. Sooner than `min_interval` after the last sent reading: suppressed.
4. `max_interval` or later after the last sent reading: sent (a heartbeat
   that proves the sensor is alive even when nothing changed).
5. With a `deadband`: a number is sent when it differs from the last sent
   value by more than the deadband (absolute, or a percentage of the last
   sent value's magnitude); any other value (bool, string, ...) is sent when
   it differs at all. Without a deadband every reading counts as a change,
   so `min_interval` alone just thins the stream out.

A change suppressed by `min_interval` is not held back for later: the next
reading after the interval is compared again, and `max_interval` bounds how
long a stream can stay silent while its sensor still reports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gateway.core.envelope import JsonValue

_FLOAT_SAFE = 2**1000
_PERCENT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*")


@dataclass(frozen=True, slots=True)
class Deadband:
    """How far a number must move to be reported: `amount`, or `amount` % if `percent`."""

    amount: float
    percent: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.amount) or self.amount < 0:
            raise ValueError(f"deadband must be a finite number >= 0, not {self.amount!r}")

    def exceeded(self, last: float, value: float) -> bool:
        """True when `value` is outside the band around `last`."""
        change = abs(value - last)
        if self.percent:
            return change > abs(last) * self.amount / 100.0 or (last == 0 and change > 0)
        return change > self.amount


def parse_deadband(value: object) -> Deadband | None:
    """A deadband from config: a number >= 0, or a percentage string such as `"2%"`.

    Returns:
        The deadband, or None when `value` is neither.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return Deadband(float(value))  # which refuses what is not finite or is negative
        except (ValueError, OverflowError):
            return None
    if isinstance(value, str):
        match = _PERCENT.fullmatch(value)
        if match is not None:
            return Deadband(float(match.group(1)), percent=True)
    return None


@dataclass(frozen=True, slots=True)
class ReportPolicy:
    """A stream's report-by-exception settings (all off by default)."""

    deadband: Deadband | None = None
    min_interval: float = 0.0
    max_interval: float | None = None

    @property
    def active(self) -> bool:
        """True when the policy can suppress anything."""
        return self.deadband is not None or self.min_interval > 0


class ExceptionFilter:
    """Decides, reading by reading, whether one stream's value is sent."""

    def __init__(self, policy: ReportPolicy) -> None:
        """Create the filter of one stream.

        Args:
            policy: The stream's settings.
        """
        self.policy = policy
        self._last_ts: float | None = None
        self._last_value: JsonValue = None

    def admit(self, ts: float, value: JsonValue) -> bool:
        """Whether to send this reading; a sent reading becomes the new reference.

        Args:
            ts: The reading's timestamp (seconds).
            value: The reading's value.

        Returns:
            True to send it, False to suppress it.
        """
        if self._send(ts, value):
            self._last_ts, self._last_value = ts, value
            return True
        return False

    def _send(self, ts: float, value: JsonValue) -> bool:
        last_ts = self._last_ts
        if last_ts is None or ts < last_ts:
            return True
        policy = self.policy
        age = ts - last_ts
        if age < policy.min_interval:
            return False
        if policy.max_interval is not None and age >= policy.max_interval:
            return True
        if policy.deadband is None:
            return True
        last = self._last_value
        if _is_number(value) and _is_number(last):
            return policy.deadband.exceeded(float(last), float(value))
        return bool(value != last or type(value) is not type(last))


def _is_number(value: JsonValue) -> bool:
    """An int or finite float, not a bool."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < _FLOAT_SAFE  # float() of a larger int overflows
    return isinstance(value, float) and math.isfinite(value)
