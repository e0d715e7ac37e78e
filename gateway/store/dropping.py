"""Readings the gateway drops on purpose from the outbox, and the notices that tell the consumer.

Two policies take stored readings out of the outbox before they were sent:
`store.on_full: drop-oldest` (the oldest rows make room for new ones,
counted `evicted`) and a stream's `max_age` (rows older than it are dropped
instead of sent, counted `expired`). Each drop is recorded per stream in
`drop_notices` as the range of seqs `[first, last]` it took; the publisher
puts the range into the next envelope of the stream (`dropped`,
docs/contracts.md) and the notice is cleared once a broker acknowledged such
an envelope. The consumer counts the seqs of the range that never arrive as
`dropped_by_gateway`, not as gaps.

All of it runs inside the caller's group-commit transaction.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field

from gateway.store.schema import DropKey

NoticeKey = tuple[str, str, str]  # (epoch, device, stream)
EXPIRED = "expired"
EVICTED = "evicted"
_IDS_PER_QUERY = 500


@dataclass
class Dropping:
    """What the publisher hands to a group commit: rows it found expired, and the notices
    a broker-acknowledged envelope carried (each up to its `last`)."""

    expired: list[int] = field(default_factory=list)
    notified: list[tuple[NoticeKey, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.expired or self.notified)


def load_notices(conn: sqlite3.Connection) -> dict[NoticeKey, tuple[int, int]]:
    """The notices not yet delivered, per stream."""
    return {(e, d, s): (first, last) for e, d, s, first, last in conn.execute(
        "SELECT epoch, device, stream, first, last FROM drop_notices")}


def drop_rows(conn: sqlite3.Connection, ids: list[int], reason: str, drops: Counter[DropKey],
              notices: dict[NoticeKey, tuple[int, int]]) -> int:
    """Delete rows by id, count them under `reason` and widen their streams' notices."""
    gone = 0
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start:start + _IDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        ranges = conn.execute(
            f"SELECT epoch, device, stream, min(seq), max(seq), count(*) FROM outbox "
            f"WHERE id IN ({marks}) GROUP BY epoch, device, stream", chunk).fetchall()
        conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
        for epoch, device, stream, first, last, count in ranges:
            drops[(reason, device, stream)] += count
            gone += count
            key = (epoch, device, stream)
            old = notices.get(key)
            notices[key] = (first, last) if old is None else (min(old[0], first),
                                                              max(old[1], last))
            conn.execute(
                "INSERT INTO drop_notices(epoch, device, stream, first, last) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(epoch, device, stream) DO UPDATE SET first = excluded.first, "
                "last = excluded.last", (*key, *notices[key]))
    return gone


def oldest_rows(conn: sqlite3.Connection, count: int) -> list[int]:
    """The ids of the `count` oldest rows (drop-oldest's victims)."""
    return [row[0] for row in conn.execute("SELECT id FROM outbox ORDER BY id LIMIT ?", (count,))]


def clear_notices(conn: sqlite3.Connection, notified: list[tuple[NoticeKey, int]],
                  notices: dict[NoticeKey, tuple[int, int]]) -> None:
    """Forget notices a broker-acknowledged envelope carried (unless they grew since)."""
    for key, last in notified:
        held = notices.get(key)
        if held is not None and held[1] <= last:
            del notices[key]
            conn.execute("DELETE FROM drop_notices WHERE epoch = ? AND device = ? AND stream = ? "
                         "AND last <= ?", (*key, last))
