"""The systemd watchdog: ping only while the pipeline makes progress.

The rule (README, "Run as a service"): a WATCHDOG=1 ping is sent every
half watchdog period when all of these hold:

- the event loop runs (the pinger is a task on it: a blocked loop sends nothing);
- the committer loop ran within the watchdog period (plus one commit interval);
- every long-lived task (link, publisher, committer) is alive;
- the publisher is not hung: while the link is connected and messages are in
  flight, some acknowledgement (of any outcome) arrived within the watchdog period.

A broker that cannot be reached is not a hang: a restart would not bring it
back, so pings go on and the reconnect backoff does its work. The same goes
for an idle link (nothing in flight). When pings stop, systemd kills the
service after `WatchdogSec=` and `Restart=on-failure` starts it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.ops.notify import Notifier

log = logging.getLogger("gateway.watchdog")

STATUS_EVERY = 5.0


@dataclass(frozen=True)
class Progress:
    """A snapshot of the pipeline taken on the event loop."""

    now: float
    committer_at: float  # monotonic time the committer loop last ran
    tasks_alive: bool
    connected: bool = False
    in_flight: int = 0
    settled: int = 0  # acknowledgements received so far, whatever their outcome


class StallDetector:
    """Decides from successive snapshots whether the pipeline is stuck (pure logic)."""

    def __init__(self, period: float, commit_interval: float) -> None:
        self.period = period
        self.committer_bound = period + commit_interval
        self._settled = -1
        self._progress_at = 0.0

    def problem(self, p: Progress) -> str | None:
        """Why the pipeline is stuck, or None while it makes progress."""
        if not p.tasks_alive:
            return "a pipeline task has died"
        if p.now - p.committer_at > self.committer_bound:
            return f"the committer has not run for {p.now - p.committer_at:.1f}s"
        if not p.connected or p.in_flight == 0 or p.settled != self._settled:
            # Idle, unreachable or moving: the clock of the hang check starts again.
            self._settled = p.settled
            self._progress_at = p.now
            return None
        if p.now - self._progress_at > self.period:
            return (f"the publisher is hung: {p.in_flight} messages in flight and no "
                    f"acknowledgement for {p.now - self._progress_at:.1f}s while connected")
        return None


async def keep_alive(notifier: Notifier, interval: float, detector: StallDetector,
                     probe: Callable[[], Progress], describe: Callable[[], str]) -> None:
    """Ping every `interval` seconds while `detector` finds no problem; never returns."""
    stuck: str | None = None
    status_at = 0.0
    last_status = ""
    while True:
        problem = detector.problem(probe())
        if problem is None:
            notifier.watchdog()
            if stuck is not None:
                log.warning("watchdog: progress again; pinging the service manager again")
        elif stuck is None:
            log.error("watchdog: %s; no longer pinging, so the service manager restarts the "
                      "service", problem)
        stuck = problem
        now = time.monotonic()
        if now - status_at >= STATUS_EVERY:
            status_at = now
            text = describe()
            if text != last_status:
                last_status = text
                notifier.status(text)
        await asyncio.sleep(interval)
