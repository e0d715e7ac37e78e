"""What end-to-end confirmation does to stored rows, in SQL.

A row that waits for the consumer's confirmation is HELD
(`gateway.core.outbox_states`): the store marks it by `acked_at`, the time
the group commit wrote its broker acknowledgement. `settle` runs inside the
group commit's transaction (`Outbox.commit`) and applies, in this order:
COMMITTED for the rows that became HELD (`acked_at` set),
CONFIRMATION_OVERDUE for held rows sent again (`acked_at` cleared,
`resends` counted) and CONFIRMED for the consumer's committed seq ranges
(deleted, whatever state the publisher has them in). `due_for_resend` finds
the held rows whose confirmation is overdue.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from gateway.core.clock import steady_time


@dataclass(frozen=True)
class Confirmations:
    """What the consumer's end-to-end confirmations settle in one commit.

    `held`: rows the broker acknowledged that now wait for a confirmation;
    `marks`: (epoch, device, stream, first, last) seqs the consumer has
    committed; `resend`: held rows whose confirmation is overdue.
    """

    held: list[int] = field(default_factory=list)
    marks: list[tuple[str, str, str, int, int]] = field(default_factory=list)
    resend: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.held or self.marks or self.resend)


_MARKED = "confirm = 1 AND epoch = ? AND device = ? AND stream = ? AND seq BETWEEN ? AND ?"


def settle(conn: sqlite3.Connection, c: Confirmations) -> tuple[int, int]:
    """Apply confirmations, inside the caller's transaction: (rows confirmed, marks that
    covered rows the broker had not acknowledged)."""
    confirmed = unacked = 0
    if c.held:
        now = steady_time()  # the clock of the resend timers (gateway.core.clock)
        conn.executemany("UPDATE outbox SET acked_at = ? WHERE id = ?", [(now, i) for i in c.held])
    # A mark deletes only rows the broker acknowledged (held above, or before): a forged
    # confirmation cannot delete a reading the broker never took. A genuine mark that
    # overtook the PUBACK of its row leaves that row; it is sent again after its timeout
    # and confirmed again, which costs one resend. Marks go before the resends, so a row
    # confirmed in the commit that finds it overdue is deleted, not sent again.
    for mark in c.marks:
        confirmed += conn.execute(f"DELETE FROM outbox WHERE {_MARKED} AND acked_at IS NOT NULL",
                                  mark).rowcount
        if conn.execute(f"SELECT 1 FROM outbox WHERE {_MARKED} AND acked_at IS NULL LIMIT 1",
                        mark).fetchone() is not None:
            unacked += 1
    if c.resend:
        conn.executemany("UPDATE outbox SET acked_at = NULL, resends = resends + 1 WHERE id = ?",
                         [(i,) for i in c.resend])
    return confirmed, unacked


def due_for_resend(conn: sqlite3.Connection, now: float, timeout: float,
                   limit: int) -> list[int]:
    """Held rows whose confirmation is overdue (the wait doubles per resend, up to 32x)."""
    cursor = conn.execute(
        # `acked_at < now - timeout` lets SQLite use the partial index of held rows.
        "SELECT id FROM outbox WHERE acked_at < ? AND confirm = 1 "
        "AND acked_at + ? * (1 << min(resends, 5)) < ? LIMIT ?",
        (now - timeout, timeout, now, limit))
    return [row_id for (row_id,) in cursor]


def held_before(conn: sqlite3.Connection, acked_before: float, limit: int) -> list[int]:
    """Held rows the broker acknowledged before a wall-clock time, oldest first."""
    cursor = conn.execute(
        "SELECT id FROM outbox WHERE acked_at < ? AND confirm = 1 ORDER BY acked_at LIMIT ?",
        (acked_before, limit))
    return [row_id for (row_id,) in cursor]


def oldest_held(conn: sqlite3.Connection) -> float | None:
    """When the broker acknowledged the oldest row that waits for a confirmation."""
    row = conn.execute("SELECT min(acked_at) FROM outbox WHERE acked_at IS NOT NULL").fetchone()
    return None if row is None or row[0] is None else float(row[0])
