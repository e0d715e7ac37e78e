"""The running consumer's figures at one instant: what the metrics collector reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConsumerSnapshot:
    """Counters and gauges of a running consumer."""

    committed: int
    duplicates: int
    rejects: dict[str, int]
    broker_connected: bool
    connections: int
    confirmations_sent: int
    broker_url: str = ""

    @property
    def reconnects(self) -> int:
        """Connections to the broker after the first."""
        return max(0, self.connections - 1)
