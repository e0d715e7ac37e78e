"""The outbox's rows as the rest of the gateway sees them: a reading on its way in, a stored
row on its way out, and what a group commit did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.clock import Unsynced


@dataclass(frozen=True, slots=True)
class NewReading:
    """A durable reading waiting for its identity and a place in the outbox."""

    device: str
    stream: str
    qos: int
    ts: float
    value: Any
    unit: str | None
    topic: str
    confirm: bool = False
    taken: Unsynced | None = None  # taken before the clock's sync (gateway.core.clock)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A stored reading as the publisher sends it; `held`: `acked_at` is set (it waits for a
    confirmation, see `gateway.core.outbox_states`)."""

    id: int
    device: str
    stream: str
    seq: int
    qos: int
    topic: str
    payload: bytes
    confirm: bool
    held: bool
    ts: float = 0.0
    mono: float | None = None  # with `boot`: taken before the clock's sync (gateway.core.clock)
    boot: str | None = None
    epoch: str = ""

    @property
    def taken(self) -> Unsynced | None:  # see `mono`
        return None if self.mono is None or self.boot is None else Unsynced(self.mono, self.boot)


@dataclass(frozen=True)
class CommitResult:
    """What one group commit did: `refused` for the size cap, `disk_full` for want of disk."""

    stored: int
    refused: int
    deleted: int
    disk_full: int = 0
    evicted: int = 0  # stored rows dropped to make room (`on_full: drop-oldest`)
    expired: int = 0  # stored rows older than their stream's max_age
