"""The running gateway's figures at one instant: what the metrics collector reads.

The collector runs in the metrics endpoint's thread; it asks the gateway for
a `GatewaySnapshot` (plain ints read from live objects, nothing the event loop
could be changing halfway) instead of reaching into the gateway's parts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GatewaySnapshot:
    """Counters and gauges of a running gateway."""

    read: int
    stored: int
    published: int
    acknowledged: int
    at_most_once_sent: int
    at_most_once_queued: int
    in_flight: int
    broker_connected: bool
    connections: int
    store_bytes: int
    confirmed: int = 0  # readings deleted by end-to-end confirmations
    confirmations_ignored: int = 0  # marks and messages ignored, every reason
    broker_url: str = ""
    broker_max_qos: int = 2

    @property
    def reconnects(self) -> int:
        """Connections to the broker after the first."""
        return max(0, self.connections - 1)
