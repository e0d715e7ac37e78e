"""When to poll which Modbus point, and how to treat a slave that went silent.

Pure: times in, decisions out, no clock and no I/O. A bus is half-duplex:
one request at a time, and a slave that does not answer costs the whole
timeout (times the retries) of bus time at every attempt. So a slave that
stops answering is put on capped exponential backoff: until its retry time
none of its points is polled (one probe then tells whether it is back),
and the other slaves' points keep their own schedules.

Each point is polled on its own grid `start + n * interval`; a poll that
comes late does not shift later ones, and missed ticks are skipped, not
made up in a burst.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.core.backoff import Backoff


@dataclass
class SlaveHealth:
    """What the schedule knows about one slave address."""

    address: int
    backoff: Backoff
    failed_polls: int = 0  # all polls that got no answer, ever
    silent_since: int = 0  # consecutive polls without an answer
    retry_at: float = float("-inf")

    @property
    def silent(self) -> bool:
        """True while the slave is not answering."""
        return self.silent_since > 0


@dataclass
class PollSchedule:
    """The next poll of a set of points, each with (slave address, interval)."""

    points: Sequence[tuple[int, float]]
    start: float
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a poll schedule needs at least one point")
        if any(interval <= 0 for _, interval in self.points):
            raise ValueError("poll intervals must be positive")
        self.due = [self.start] * len(self.points)
        self.slaves = {
            address: SlaveHealth(address, Backoff(self.backoff_base, self.backoff_max, self.rng))
            for address, _ in self.points
        }

    def next_poll(self) -> tuple[float, int]:
        """The earliest time a point may be polled, and that point's index.

        Ties go to the point listed first, so the order of the config decides.
        """
        best_time, best = float("inf"), 0
        for index, (address, _) in enumerate(self.points):
            when = max(self.due[index], self.slaves[address].retry_at)
            if when < best_time:
                best_time, best = when, index
        return best_time, best

    def answered(self, index: int, now: float) -> bool:
        """Record that the point's slave answered (with data or a Modbus exception).

        Returns:
            True when the slave had been silent until now.
        """
        self._advance(index, now)
        slave = self.slaves[self.points[index][0]]
        was_silent = slave.silent
        slave.silent_since = 0
        slave.retry_at = float("-inf")
        slave.backoff.reset()
        return was_silent

    def unanswered(self, index: int, now: float) -> bool:
        """Record that the point's slave did not answer; back off the whole slave.

        Returns:
            True when this is the first unanswered poll after the slave was answering.
        """
        self._advance(index, now)
        slave = self.slaves[self.points[index][0]]
        slave.failed_polls += 1
        slave.silent_since += 1
        slave.retry_at = now + slave.backoff.next_delay()
        return slave.silent_since == 1

    def _advance(self, index: int, now: float) -> None:
        interval = self.points[index][1]
        due = self.due[index] + interval
        if due <= now:  # late: skip the missed ticks, keep the grid's phase
            due += ((now - due) // interval + 1) * interval
        self.due[index] = due
