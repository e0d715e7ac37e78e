"""What every store module writes through: the store's error, transactions, meta.

The other `store*` modules all import it and it imports none of them, so
they can share it without an import cycle. The store's errors:
`StoreError` (here: the file cannot be used, raised by `Outbox.open`) and
`DiskFullError` (`store_space.py`: a commit found no room, a
`sqlite3.OperationalError`).
"""

from __future__ import annotations

import sqlite3

from gateway.core.errors import MqttGatewayError

BUSY_TIMEOUT_MS = 5000  # how long a write waits for another writer (`status` only reads)


class StoreError(MqttGatewayError):
    """The store file cannot be used; the message says what and where."""


class transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolling back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self._conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT can leave the transaction open, wedging every later BEGIN.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK")


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """A meta value, or None when the key is not set."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set a meta key, inside the caller's transaction."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
