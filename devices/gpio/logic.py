"""Debounce and pulse counting for GPIO edges, as pure code.

Input is what the kernel reports for an input line: edge events, each a
direction (rising: the line became active; falling: inactive) and a
timestamp in nanoseconds on CLOCK_MONOTONIC. Mechanical contacts bounce, so
one press is a burst of edges within a few milliseconds.

`Debouncer` accepts a new level only once the line has stayed at it for
`debounce_ns` with no contrary edge: a burst rising/falling/rising settles
into one rising transition, stamped with the time of its last edge; a
glitch shorter than the debounce time (rising then falling) produces
nothing. Because confirming needs time to pass without an edge, the caller
asks `deadline_ns()` when to call `flush(now_ns)` again. The kernel's own
debounce (where the chip has one) is not used: emulators and many chips
ignore it, and this code behaves the same everywhere.

`PulseCounter` counts confirmed transitions of one kind per interval and
gives the count, the running total and the rate.
"""

from __future__ import annotations

from dataclasses import dataclass

EDGES = ("rising", "falling", "both")


@dataclass(frozen=True, slots=True)
class Transition:
    """A debounced change of level: `active` after it, at `ts_ns` (monotonic)."""

    active: bool
    ts_ns: int


class Debouncer:
    """Turns bouncing edges into confirmed transitions."""

    def __init__(self, debounce_ns: int, initial: bool = False) -> None:
        """Create a debouncer.

        Args:
            debounce_ns: How long a new level must hold, in ns (0: every edge counts).
            initial: The level the line is known to have now.

        Raises:
            ValueError: If `debounce_ns` is negative.
        """
        if debounce_ns < 0:
            raise ValueError(f"debounce must not be negative, not {debounce_ns}")
        self.debounce_ns = debounce_ns
        self.level = initial
        self._pending: Transition | None = None
        self.bounces = 0  # pending levels cancelled by a contrary edge

    def feed(self, active: bool, ts_ns: int) -> list[Transition]:
        """Take one edge.

        Args:
            active: True for a rising edge (the line became active), False for falling.
            ts_ns: The edge's kernel timestamp.

        Returns:
            Transitions confirmed by this edge's arrival (at most one: the
            pending one, if it held long enough before this edge came).
        """
        confirmed = self.flush(ts_ns)
        if self._pending is not None:
            self.bounces += 1  # the pending level did not hold: a bounce
            self._pending = None
        if active != self.level:
            self._pending = Transition(active, ts_ns)
            if self.debounce_ns == 0:
                confirmed += self.flush(ts_ns)
        return confirmed

    def flush(self, now_ns: int) -> list[Transition]:
        """Confirm the pending level if it has held for the debounce time by `now_ns`."""
        pending = self._pending
        if pending is None or now_ns - pending.ts_ns < self.debounce_ns:
            return []
        self._pending = None
        self.level = pending.active
        return [pending]

    def deadline_ns(self) -> int | None:
        """When a pending level would be confirmed, or None if nothing is pending."""
        return None if self._pending is None else self._pending.ts_ns + self.debounce_ns


def wanted(transition: Transition, edge: str) -> bool:
    """Whether a transition is of the kind (`rising`, `falling`, `both`) configured."""
    return edge == "both" or transition.active == (edge == "rising")


@dataclass
class PulseCounter:
    """Pulses per interval, for rain gauges, flow meters and energy meters."""

    total: int = 0
    _in_interval: int = 0

    def add(self, count: int = 1) -> None:
        """Count pulses."""
        self.total += count
        self._in_interval += count

    def close_interval(self, seconds: float) -> tuple[int, int, float]:
        """End the current interval.

        Args:
            seconds: How long the interval really lasted.

        Returns:
            (pulses in the interval, total since start, pulses per second).
        """
        count, self._in_interval = self._in_interval, 0
        rate = count / seconds if seconds > 0 else 0.0
        return count, self.total, round(rate, 6)


def wall_time(event_ns: int, monotonic_now_ns: int, wall_now: float) -> float:
    """A monotonic kernel timestamp as Unix time, by the clocks' offset now."""
    return wall_now - (monotonic_now_ns - event_ns) / 1e9
