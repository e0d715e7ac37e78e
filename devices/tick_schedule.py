"""A fixed grid of ticks for drivers that sample on an interval (simulator, w1, bme280)."""

from __future__ import annotations


class TickSchedule:
    """Ticks on a fixed grid `start + n * interval`, so emission does not drift.

    A late wake-up shortens the next wait instead of shifting every later
    tick; after falling more than a whole interval behind (a suspended
    machine, an overloaded loop) the grid restarts from now rather than
    emitting a burst to catch up.
    """

    def __init__(self, interval: float, start: float) -> None:
        """Create a schedule whose first tick is at `start`.

        Args:
            interval: Seconds between ticks, positive.
            start: The first tick, on any monotonic clock.

        Raises:
            ValueError: If `interval` is not positive.
        """
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.interval = interval
        self.next_tick = start

    def wait_after_tick(self, now: float) -> float:
        """Advance past the tick just taken and say how long to wait for the next.

        Args:
            now: The current time on the schedule's clock.

        Returns:
            Seconds to wait, never negative.
        """
        self.next_tick += self.interval
        delay = self.next_tick - now
        if delay < -self.interval:
            self.next_tick = now
            return 0.0
        return max(delay, 0.0)
