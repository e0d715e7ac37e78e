"""What a running service tells the outside: sd_notify states, watchdog pings, metrics.

Shared by the gateway and the consumer: READY=1 once the service works,
STATUS= lines while it runs, STOPPING=1 when it shuts down, WATCHDOG=1
while its pipeline makes progress (gateway/watchdog.py has the rule), and
the optional Prometheus endpoint (gateway/metrics.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.ops.notify import Notifier, watchdog_interval
from gateway.ops.watchdog import Progress, StallDetector, keep_alive

if TYPE_CHECKING:
    from gateway.ops.metrics import MetricsEndpoint

log = logging.getLogger("gateway.supervision")


class Supervision:
    """The service manager's and the monitoring's view of one running service."""

    def __init__(self, metrics: MetricsEndpoint | None = None) -> None:
        self.notifier = Notifier.from_env()
        self.metrics = metrics
        self.interval = watchdog_interval()
        self._pinger: asyncio.Task[None] | None = None

    def ready(self, status: str, probe: Callable[[], Progress], commit_interval: float,
              describe: Callable[[], str]) -> None:
        """The service works: start the metrics endpoint and the watchdog, send READY=1."""
        if self.metrics is not None:
            self.metrics.start()
        if self.interval is not None and self.notifier.enabled:
            detector = StallDetector(2 * self.interval, commit_interval)
            self._pinger = asyncio.create_task(
                keep_alive(self.notifier, self.interval, detector, probe, describe),
                name="watchdog")
            log.info("watchdog: pinging every %.1fs while the pipeline makes progress",
                     self.interval)
        self.notifier.ready(status)

    def stopping(self, status: str) -> None:
        """Shutdown has begun: STOPPING=1, no more pings."""
        if self._pinger is not None:
            self._pinger.cancel()
        self.notifier.stopping(status)

    async def close(self) -> None:
        """Stop the pinger and the metrics endpoint."""
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
            self._pinger = None
        if self.metrics is not None:
            self.metrics.close()
        self.notifier.close()
