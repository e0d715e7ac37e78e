"""The publisher's bounded window of unacknowledged messages, and what an ack means.

Pure bookkeeping: which outbox row each in-flight MQTT packet id carries,
how much room is left, and how a PUBACK/PUBCOMP reason code is to be taken.
paho silently overwrites queued messages past 65,535 unacknowledged ones, so
the window is always far smaller than that and never exceeds the broker's
Receive Maximum.
"""

from __future__ import annotations

from enum import Enum
from typing import Generic, TypeVar

NO_MATCHING_SUBSCRIBERS = 0x10

# MQTT 5 reason codes that say "try again later", not "delivered" nor "never".
_RETRY_CODES = frozenset({
    NO_MATCHING_SUBSCRIBERS,  # accepted, but nobody would get it: the consumer's session is gone
    0x92,  # Packet Identifier not found: the broker lost the QoS 2 state (it restarted)
    0x97,  # Quota exceeded
})


class AckOutcome(Enum):
    """What the publisher does with a row after its acknowledgement."""

    DELIVERED = "delivered"
    RETRY = "retry"
    QUARANTINE = "quarantine"


def classify_ack(reason_code: int) -> AckOutcome:
    """Map a PUBACK/PUBCOMP reason code to what happens to the stored row.

    Codes below 0x80 are successes, except 0x10 "no matching subscribers":
    the broker took the message and would give it to nobody, so the row is
    kept and sent again later (a consumer whose session the broker lost gets
    it once it subscribes again). A failure code is a rejection, not a
    delivery: transient ones are retried, the rest quarantine the row so it
    cannot block the stream.
    """
    if reason_code in _RETRY_CODES:
        return AckOutcome.RETRY
    if reason_code < 0x80:
        return AckOutcome.DELIVERED
    return AckOutcome.QUARANTINE


Row = TypeVar("Row")


class InflightWindow(Generic[Row]):
    """Packet ids in flight and the outbox row each one carries (its id, or the row itself)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("window capacity must be at least 1")
        self.capacity = capacity
        self._rows: dict[int, Row] = {}

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def room(self) -> int:
        """How many more messages may be sent now."""
        return max(0, self.capacity - len(self._rows))

    def resize(self, capacity: int) -> None:
        """Shrink or grow the window (to the broker's Receive Maximum)."""
        self.capacity = max(1, capacity)

    def add(self, mid: int, row: Row) -> None:
        """Record that packet `mid` carries `row`.

        Raises:
            ValueError: the packet id is already in flight (paho wrapped around).
        """
        if mid in self._rows:
            raise ValueError(f"packet id {mid} is already in flight")
        self._rows[mid] = row

    def settle(self, mid: int) -> Row | None:
        """Forget packet `mid`; the row it carried, or None for an unknown id."""
        return self._rows.pop(mid, None)

    def rows(self) -> list[Row]:
        """The rows in flight."""
        return list(self._rows.values())
