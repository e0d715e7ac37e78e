"""The durable outbox: SQLite in WAL mode, the only source of truth on the gateway.

One `Outbox` belongs to the running gateway's event loop. `commit()` is the
group commit: in one transaction it gives new durable readings their seq
(DESIGN.md rule 2), stores them, deletes the rows the broker acknowledged,
moves rejected rows to quarantine and adds drop counts. A row leaves
`outbox` only through an acknowledgement or quarantine.

Size policy: when the live pages of the store reach `max_bytes`, new durable
readings are refused and counted as `store_full`; stored readings are never
evicted to make room.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.envelope import Envelope, encode
from gateway.identity import SequenceCounters, StreamKey, new_epoch
from gateway.store_schema import SCHEMA_VERSION, create_schema

log = logging.getLogger("gateway.store")

DropKey = tuple[str, str, str]  # (reason, device, stream)

_UPSERT_SEQUENCE = (
    "INSERT INTO sequences(epoch, device, stream, last_seq) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(epoch, device, stream) DO UPDATE SET last_seq = excluded.last_seq"
)


class StoreError(Exception):
    """The store file cannot be used; the message says what and where."""


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


@dataclass(frozen=True)
class Confirmations:
    """What the consumer's end-to-end confirmations settle in one commit.

    `held`: rows the broker acknowledged that now wait for a confirmation;
    `marks`: (epoch, device, stream, seq) up to which the consumer has
    committed; `resend`: held rows whose confirmation is overdue.
    """

    held: list[int] = field(default_factory=list)
    marks: list[tuple[str, str, str, int]] = field(default_factory=list)
    resend: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.held or self.marks or self.resend)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A stored reading as the publisher sends it."""

    id: int
    device: str
    stream: str
    seq: int
    qos: int
    topic: str
    payload: bytes
    confirm: bool


@dataclass(frozen=True)
class CommitResult:
    """What one group commit did."""

    stored: int
    refused: int
    deleted: int


class Outbox:
    """The SQLite outbox of one gateway."""

    def __init__(self, conn: sqlite3.Connection, path: Path, gateway_id: str, epoch: str,
                 counters: SequenceCounters, continued: bool, max_bytes: int) -> None:
        self._conn = conn
        self.path = path
        self.gateway_id = gateway_id
        self.epoch = epoch
        self.counters = counters
        self.continued = continued
        self.max_bytes = max_bytes
        self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        self.bytes_used = self._live_bytes()

    @classmethod
    def open(cls, path: Path, gateway_id: str, *, durability: str, max_bytes: int,
             now: float | None = None) -> Outbox:
        """Open (or create) the store and decide the epoch.

        The epoch of the previous run continues only when that run stopped
        cleanly; otherwise a new epoch starts. Either way the store is marked
        "running" with a fully synced commit before any seq is handed out.

        Raises:
            StoreError: the file or its directory cannot be used.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA synchronous=FULL")
            create_schema(conn)
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise StoreError(f"store {path} has schema version {meta.get('schema_version')}, "
                             f"this release reads {SCHEMA_VERSION}")
        clean = meta.get("clean_stop") == "1" and "epoch" in meta
        epoch = meta["epoch"] if clean else new_epoch(now or time.time(), secrets.token_hex(4))
        last: dict[StreamKey, int] = {}
        if clean:
            for device, stream, seq in conn.execute(
                "SELECT device, stream, last_seq FROM sequences WHERE epoch = ?", (epoch,)
            ):
                last[(device, stream)] = seq
        with _transaction(conn):
            _set_meta(conn, "epoch", epoch)
            _set_meta(conn, "clean_stop", "0")
            _set_meta(conn, "gateway_id", gateway_id)
            _set_meta(conn, "started_at", f"{time.time():.3f}")
        conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        return cls(conn, path, gateway_id, epoch, SequenceCounters(last), clean, max_bytes)

    # -- the write path ----------------------------------------------------
    def commit(self, readings: list[NewReading], acked: list[int],
               quarantined: list[tuple[int, str]], drops: Counter[DropKey],
               confirmations: Confirmations | None = None) -> CommitResult:
        """One group commit; see the module docstring.

        Raises:
            sqlite3.Error: the transaction failed and was rolled back (the
                caller counts the readings as dropped and keeps the acks).
        """
        refused = 0
        if readings and self.bytes_used >= self.max_bytes:
            refused = len(readings)
            drops = drops.copy()  # the caller's counts stay as they were if this commit fails
            for r in readings:
                drops[("store_full", r.device, r.stream)] += 1
            readings = []
        conn = self._conn
        with _transaction(conn):
            if readings:
                conn.executemany(
                    "INSERT INTO outbox(epoch, device, stream, seq, qos, ts, topic, payload, "
                    "confirm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    self._identify(readings),
                )
            if quarantined:
                now = time.time()
                conn.executemany(
                    "INSERT INTO quarantine(id, epoch, device, stream, seq, qos, topic, payload, "
                    "reason, quarantined_at) SELECT id, epoch, device, stream, seq, qos, topic, "
                    "payload, ?, ? FROM outbox WHERE id = ?",
                    [(reason, now, row_id) for row_id, reason in quarantined],
                )
                acked = [*acked, *(row_id for row_id, _ in quarantined)]
            if acked:
                conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in acked])
            if confirmations:
                self._settle(confirmations)
            dirty = self.counters.take_dirty()
            if dirty:
                conn.executemany(_UPSERT_SEQUENCE,
                                 [(self.epoch, d, s, seq) for (d, s), seq in dirty])
            if drops:
                conn.executemany(
                    "INSERT INTO drops(reason, device, stream, count) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(reason, device, stream) DO UPDATE SET count = count + excluded.count",
                    [(*key, n) for key, n in drops.items()],
                )
        if readings or acked or confirmations:
            self.bytes_used = self._live_bytes()
        return CommitResult(len(readings), refused, len(acked))

    def _settle(self, c: Confirmations) -> None:
        """Apply confirmations, inside the caller's transaction."""
        conn = self._conn
        if c.held:
            now = time.time()
            conn.executemany("UPDATE outbox SET acked_at = ? WHERE id = ?",
                             [(now, i) for i in c.held])
        if c.resend:
            conn.executemany("UPDATE outbox SET acked_at = NULL, resends = resends + 1 "
                             "WHERE id = ?", [(i,) for i in c.resend])
        if c.marks:
            conn.executemany("DELETE FROM outbox WHERE confirm = 1 AND epoch = ? AND device = ? "
                             "AND stream = ? AND seq <= ?", c.marks)

    def due_for_resend(self, now: float, timeout: float, limit: int) -> list[int]:
        """Held rows whose confirmation is overdue (the wait doubles per resend, up to 32x)."""
        cursor = self._conn.execute(
            # `acked_at < now - timeout` lets SQLite use the partial index of held rows.
            "SELECT id FROM outbox WHERE acked_at < ? AND confirm = 1 "
            "AND acked_at + ? * (1 << min(resends, 5)) < ? LIMIT ?",
            (now - timeout, timeout, now, limit))
        return [row_id for (row_id,) in cursor]

    def issued(self, epoch: str, device: str, stream: str) -> int | None:
        """The last seq handed out for a stream in an epoch, or None for an unknown one."""
        if epoch == self.epoch:
            last = self.counters.last((device, stream))
            return last or None
        row = self._conn.execute(
            "SELECT last_seq FROM sequences WHERE epoch = ? AND device = ? AND stream = ?",
            (epoch, device, stream)).fetchone()
        return int(row[0]) if row is not None else None

    def _identify(self, readings: list[NewReading]) -> list[tuple[Any, ...]]:
        """Hand out seqs and encode payloads, inside the caller's transaction."""
        rows = []
        for r in readings:
            seq = self.counters.next((r.device, r.stream))
            payload = encode(Envelope(self.gateway_id, self.epoch, r.device, r.stream, seq, r.ts,
                                      r.value, r.unit, r.confirm))
            rows.append((self.epoch, r.device, r.stream, seq, r.qos, r.ts, r.topic, payload,
                         int(r.confirm)))
        return rows

    def write_runtime(self, snapshot: dict[str, Any]) -> None:
        """Record what `status` shows of the running process (best effort)."""
        with _transaction(self._conn):
            _set_meta(self._conn, "runtime", json.dumps(snapshot, separators=(",", ":")))

    # -- the read path -----------------------------------------------------
    def fetch(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Stored rows in id order (which is seq order per stream)."""
        cursor = self._conn.execute(
            "SELECT id, device, stream, seq, qos, topic, payload, confirm FROM outbox WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [OutboxRow(*row) for row in cursor]

    def fetch_ids(self, ids: list[int]) -> list[OutboxRow]:
        """Specific rows (to resend), in id order; rows no longer stored are skipped."""
        marks = ",".join("?" * len(ids))
        cursor = self._conn.execute(
            f"SELECT id, device, stream, seq, qos, topic, payload, confirm FROM outbox "
            f"WHERE id IN ({marks}) "
            "ORDER BY id", ids
        )
        return [OutboxRow(*row) for row in cursor]

    def pending_count(self) -> int:
        """Rows waiting for an acknowledgement."""
        return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _live_bytes(self) -> int:
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    # -- stopping ----------------------------------------------------------
    def close(self, *, clean: bool) -> None:
        """Close the store; `clean` marks the epoch as continuable (a synced commit)."""
        try:
            if clean:
                self._conn.execute("PRAGMA synchronous=FULL")
                with _transaction(self._conn):
                    self._conn.executemany(
                        _UPSERT_SEQUENCE,
                        [(self.epoch, d, s, seq) for (d, s), seq in self.counters.items()])
                    _set_meta(self._conn, "clean_stop", "1")
                    _set_meta(self._conn, "stopped_at", f"{time.time():.3f}")
                    self._conn.execute("DELETE FROM meta WHERE key = 'runtime'")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()


class _transaction:
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


def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )

