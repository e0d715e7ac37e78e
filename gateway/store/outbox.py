"""The durable outbox: SQLite in WAL mode, the only source of truth on the gateway.

One `Outbox` belongs to the running gateway's event loop. `commit()` is the
group commit: in one transaction it gives new durable readings their seq
(docs/contracts.md, "Reading identity"), stores them, deletes the rows the broker
acknowledged, moves rejected rows to quarantine and adds drop counts. A row
leaves `outbox` only through an acknowledgement, a confirmation or
quarantine (its life: `gateway.core.outbox_states`). A seq is taken for good
only when its transaction commits: a failed commit hands out nothing.

Size policy (`on_full`): when the live pages of the store reach `max_bytes`,
new durable readings are refused and counted as `store_full` (`refuse-new`), or
the oldest stored rows make room for them, counted as `evicted` (`drop-oldest`,
with a notice to the consumer: `dropping.py`, which also drops expired rows).

Elsewhere: opening the file, `opening.py`; disk full, `space.py`; a corrupt store,
`recovery.py`; confirmation's SQL, `confirmations.py`; tables, `schema.py`; meta, `sql.py`.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.envelope import MAX_SEQ, Envelope, encode
from gateway.core.identity import SequenceCounters, StreamKey, new_epoch
from gateway.store.confirmations import (
    Confirmations,
    due_for_resend,
    held_before,
    oldest_held,
    settle,
)
from gateway.store.dropping import (
    EVICTED,
    EXPIRED,
    Dropping,
    clear_notices,
    drop_rows,
    load_notices,
    oldest_rows,
)
from gateway.store.opening import open_file
from gateway.store.recovery import salvage
from gateway.store.rows import CommitResult, NewReading, OutboxRow
from gateway.store.schema import DropKey
from gateway.store.space import WAL_CHECKPOINT_BYTES, DiskSpace, Reserve, SpaceGuard, reserve_path
from gateway.store.sql import StoreError, get_meta, set_meta, transaction

__all__ = ["CommitResult", "NewReading", "Outbox", "OutboxRow"]

log = logging.getLogger("gateway.store")

_SELECT_ROWS = ("SELECT id, device, stream, seq, qos, topic, payload, confirm, acked_at IS NOT NULL, "
                "ts, mono, boot, epoch FROM outbox")
_UPSERT_SEQUENCE = (
    "INSERT INTO sequences(epoch, device, stream, last_seq) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(epoch, device, stream) DO UPDATE SET last_seq = excluded.last_seq"
)


class Outbox:
    """The SQLite outbox of one gateway."""

    def __init__(self, conn: sqlite3.Connection, path: Path, gateway_id: str, epoch: str,
                 counters: SequenceCounters, continued: bool, max_bytes: int, *,
                 reserve: Reserve | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._conn = conn
        self.path = path
        self.gateway_id = gateway_id
        self.epoch = epoch
        self.counters = counters
        self.continued = continued
        self.max_bytes = max_bytes
        self.disk = DiskSpace(conn, path, reserve or Reserve(reserve_path(path)), clock)
        self.recovered = 0  # times a corrupt store was moved aside (meta store_recovered)
        self.confirmed = 0  # rows deleted by the consumer's confirmations (this run)
        self.marks_unacked = 0  # marks covering rows the broker had not acknowledged
        self._unsaved: dict[StreamKey, int] = {}  # counters whose commit failed, to write again
        self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        # Checkpoints small enough for the reserve to cover (see space.py).
        conn.execute(f"PRAGMA wal_autocheckpoint={max(16, WAL_CHECKPOINT_BYTES // self._page_size)}")
        self.bytes_used = self._live_bytes()
        self.on_full = "refuse-new"
        self.notices = load_notices(conn)  # seqs dropped on purpose, not yet told (dropping.py)

    @property
    def reserve(self) -> Reserve:
        """The reserve file beside the store."""
        return self.disk.reserve

    @property
    def space(self) -> SpaceGuard:
        """The disk-full state."""
        return self.disk.guard

    @property
    def disk_full(self) -> bool:
        """True while new durable readings are refused for want of disk space."""
        return self.space.full

    @classmethod
    def open(cls, path: Path, gateway_id: str, *, durability: str, max_bytes: int,
             now: float | None = None, clock: Callable[[], float] = time.monotonic) -> Outbox:
        """Open (or create) the store and decide the epoch.

        The epoch of the previous run continues only when that run stopped
        cleanly; otherwise a new epoch starts. Either way the store is marked
        "running" with a fully synced commit before any seq is handed out.
        A corrupt store is moved aside and salvaged (see recovery.py).

        Raises:
            StoreError: the file or its directory cannot be used.
        """
        opened = open_file(path, now)
        conn, meta, reserve, aside = opened.conn, opened.meta, opened.reserve, opened.aside
        try:
            clean = meta.get("clean_stop") == "1" and "epoch" in meta and aside is None
            epoch = meta["epoch"] if clean else new_epoch(now or time.time(), secrets.token_hex(4))
            last: dict[StreamKey, int] = {(device, stream): seq for device, stream, seq in (
                conn.execute("SELECT device, stream, last_seq FROM sequences WHERE epoch = ?",
                             (epoch,)) if clean else ())}
            box = cls(conn, path, gateway_id, epoch, SequenceCounters(last), clean, max_bytes,
                      reserve=reserve, clock=clock)
            box._start(aside)
            conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        return box

    def _start(self, aside: Path | None) -> None:
        """Hold the reserve, mark the store running, finish a pending salvage."""
        self.disk.hold_reserve()

        def mark_running() -> None:
            with transaction(self._conn):
                set_meta(self._conn, "epoch", self.epoch)
                set_meta(self._conn, "clean_stop", "0")
                set_meta(self._conn, "gateway_id", self.gateway_id)
                set_meta(self._conn, "started_at", f"{time.time():.3f}")
                if aside is not None:
                    set_meta(self._conn, "salvage_from", str(aside))
                    set_meta(self._conn, "store_recovered", "1")

        self.disk.write(mark_running)
        salvage_from = get_meta(self._conn, "salvage_from")
        if salvage_from is not None:
            salvage(self._conn, self.path, self.epoch, Path(salvage_from), self.disk.write)
        self.recovered = int(get_meta(self._conn, "store_recovered") or 0)
        self.bytes_used = self._live_bytes()
        self.disk.check_cap(self.max_bytes, self.bytes_used)

    # -- the write path ----------------------------------------------------
    def commit(self, readings: list[NewReading], acked: list[int],
               quarantined: list[tuple[int, str]], drops: Counter[DropKey],
               confirmations: Confirmations | None = None,
               dropping: Dropping | None = None) -> CommitResult:
        """One group commit; see the module docstring.

        Raises:
            DiskFullError: no room even for the acks; nothing changed (the
                caller counts the readings as disk_full and keeps the acks).
            sqlite3.Error: the transaction failed and was rolled back (the
                caller counts the readings as dropped and keeps the acks).
        """
        drops = drops.copy()  # the caller's counts stay as they were if this commit fails
        refused = disk_refused = evict = 0
        if readings and self.space.full and not self.disk.try_resume():
            disk_refused = _refuse(readings, "disk_full", drops)
            readings = []
        if readings and self.bytes_used >= self.max_bytes:
            if self.on_full == "drop-oldest":
                evict = len(readings)
            else:
                refused = _refuse(readings, "store_full", drops)
                readings = []
        deleted = [*acked, *(row_id for row_id, _ in quarantined)]
        self._unsaved.update(self.counters.take_dirty())
        batch = readings
        dropped = (0, 0)

        def write() -> None:
            nonlocal dropped
            dropped = self._write(batch, deleted, quarantined, drops, confirmations,
                                  (evict, dropping or Dropping()))

        def shed() -> None:  # no room: the new readings go, counted; the rest is written
            nonlocal batch, disk_refused
            disk_refused += _refuse(batch, "disk_full", drops)
            batch = []

        self.disk.write(write, shed)
        if self.space.full:
            self.disk.checkpoint("PASSIVE")  # so the next commit reuses the WAL instead of growing it
        if batch or deleted or confirmations or any(dropped):
            self.bytes_used = self._live_bytes()
        return CommitResult(len(batch), refused, len(deleted), disk_refused, *dropped)

    def _write(self, readings: list[NewReading], deleted: list[int],
               quarantined: list[tuple[int, str]], drops: Counter[DropKey],
               confirmations: Confirmations | None, on_purpose: tuple[int, Dropping]
               ) -> tuple[int, int]:
        """The group commit's transaction; seqs are taken only once it committed. Returns
        how many rows it dropped on purpose: (evicted, expired)."""
        rows, last = self._identify(readings)
        drops, notices, (evict, dropping) = drops.copy(), dict(self.notices), on_purpose
        seqs = dict(self._unsaved)
        for key, seq in last.items():
            seqs[key] = max(seq, seqs.get(key, 0))
        conn = self._conn
        with transaction(conn):
            if rows:
                conn.executemany(
                    "INSERT INTO outbox(epoch, device, stream, seq, qos, ts, topic, payload, "
                    "confirm, mono, boot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            if quarantined:
                now = time.time()
                conn.executemany(
                    "INSERT INTO quarantine(id, epoch, device, stream, seq, qos, topic, payload, "
                    "reason, quarantined_at) SELECT id, epoch, device, stream, seq, qos, topic, "
                    "payload, ?, ? FROM outbox WHERE id = ?",
                    [(reason, now, row_id) for row_id, reason in quarantined],
                )
            if deleted:
                conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in deleted])
            settled = settle(conn, confirmations) if confirmations else (0, 0)
            dropped = (drop_rows(conn, oldest_rows(conn, evict), EVICTED, drops, notices),
                       drop_rows(conn, dropping.expired, EXPIRED, drops, notices))
            clear_notices(conn, dropping.notified, notices)
            if seqs:
                conn.executemany(_UPSERT_SEQUENCE,
                                 [(self.epoch, d, s, seq) for (d, s), seq in seqs.items()])
            if drops:
                conn.executemany(
                    "INSERT INTO drops(reason, device, stream, count) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(reason, device, stream) DO UPDATE SET count = count + excluded.count",
                    [(*key, n) for key, n in drops.items()],
                )
        self._unsaved.clear()
        self.confirmed += settled[0]
        self.marks_unacked += settled[1]
        self.notices = notices
        for key, seq in last.items():
            while self.counters.last(key) < seq:
                self.counters.next(key)
        if last:
            self.counters.take_dirty()  # just written, in this transaction
        return dropped

    def due_for_resend(self, now: float, timeout: float, limit: int) -> list[int]:
        """Held rows whose confirmation is overdue (see confirmations.py)."""
        return due_for_resend(self._conn, now, timeout, limit)

    def held_before(self, acked_before: float, limit: int) -> list[int]:
        """Held rows acknowledged before a wall-clock time, oldest first (confirmations.py)."""
        return held_before(self._conn, acked_before, limit)

    def oldest_held(self) -> float | None:
        """When the oldest row that waits for a confirmation was acknowledged."""
        return oldest_held(self._conn)

    def issued(self, epoch: str, device: str, stream: str) -> int | None:
        """The last seq handed out for a stream in an epoch, or None for an unknown one."""
        if epoch == self.epoch:
            last = self.counters.last((device, stream))
            return last or None
        row = self._conn.execute(
            "SELECT last_seq FROM sequences WHERE epoch = ? AND device = ? AND stream = ?",
            (epoch, device, stream)).fetchone()
        return int(row[0]) if row is not None else None

    def _identify(self, readings: list[NewReading]
                  ) -> tuple[list[tuple[Any, ...]], dict[StreamKey, int]]:
        """Seqs and payloads for a transaction, and the last seq per stream it takes.

        The counters move only once the transaction committed (`_write`).

        Raises:
            OverflowError: a stream's seq would pass 2^63-1.
        """
        rows = []
        last: dict[StreamKey, int] = {}
        for r in readings:
            key = (r.device, r.stream)
            seq = last.get(key, self.counters.last(key)) + 1
            if seq > MAX_SEQ:
                raise OverflowError(f"seq of {r.device}/{r.stream} passed 2^63-1")
            last[key] = seq
            payload = encode(Envelope(self.gateway_id, self.epoch, r.device, r.stream, seq, r.ts,
                                      r.value, r.unit, r.confirm))
            taken = r.taken
            rows.append((self.epoch, r.device, r.stream, seq, r.qos, r.ts, r.topic, payload,
                         int(r.confirm), taken and taken.mono, taken and taken.boot))
        return rows, last

    def write_runtime(self, snapshot: dict[str, Any]) -> None:
        """Record what `status` shows of the running process (best effort)."""
        snapshot = {**snapshot, "store_disk_full": self.space.full,
                    "store_recovered": self.recovered}
        with transaction(self._conn):
            set_meta(self._conn, "runtime", json.dumps(snapshot, separators=(",", ":")))

    # -- the read path -----------------------------------------------------
    def fetch(self, after_id: int, limit: int, *, up_to: int | None = None) -> list[OutboxRow]:
        """Stored rows in id order (which is seq order per stream): the next `limit` after
        `after_id`, and not after `up_to` when given."""
        if up_to is not None:
            cursor = self._conn.execute(f"{_SELECT_ROWS} WHERE id > ? AND id <= ? ORDER BY id "
                                        "LIMIT ?", (after_id, up_to, limit))
        else:
            cursor = self._conn.execute(f"{_SELECT_ROWS} WHERE id > ? ORDER BY id LIMIT ?",
                                        (after_id, limit))
        return [OutboxRow(*row) for row in cursor]

    def fetch_ids(self, ids: list[int]) -> list[OutboxRow]:
        """Specific rows (to resend), in id order; rows no longer stored are skipped."""
        marks = ",".join("?" * len(ids))
        cursor = self._conn.execute(f"{_SELECT_ROWS} WHERE id IN ({marks}) ORDER BY id", ids)
        return [OutboxRow(*row) for row in cursor]

    def last_id(self) -> int:
        """The id of the newest stored row (0 when the outbox is empty)."""
        return int(self._conn.execute("SELECT max(id) FROM outbox").fetchone()[0] or 0)

    def pending_bound(self) -> int:
        """At most this many rows wait (ids from the oldest to the newest): two index lookups,
        where `pending_count` reads the whole table (seconds for a big backlog on an SD card)."""
        low, high = self._conn.execute(
            "SELECT (SELECT min(id) FROM outbox), (SELECT max(id) FROM outbox)").fetchone()
        return 0 if low is None else int(high) - int(low) + 1

    def pending_count(self) -> int:  # rows waiting for an acknowledgement
        return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _live_bytes(self) -> int:
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    # -- stopping ----------------------------------------------------------
    def close(self, *, clean: bool) -> bool:
        """Close the store; `clean` marks the epoch as continuable (a synced commit).

        Returns True when the stop was marked clean. A mark that cannot be
        written (a full disk) is logged: the next start then begins a new epoch.
        """
        marked = False
        try:
            if clean:
                def mark_clean() -> None:
                    with transaction(self._conn):
                        self._conn.executemany(
                            _UPSERT_SEQUENCE,
                            [(self.epoch, d, s, seq) for (d, s), seq in self.counters.items()])
                        set_meta(self._conn, "clean_stop", "1")
                        set_meta(self._conn, "stopped_at", f"{time.time():.3f}")
                        self._conn.execute("DELETE FROM meta WHERE key = 'runtime'")

                try:
                    self._conn.execute("PRAGMA synchronous=FULL")
                    self.disk.write(mark_clean)
                    marked = True
                except sqlite3.Error as exc:
                    log.error("store %s: the stop could not be marked clean (%s); the next start "
                              "begins a new epoch", self.path, exc)
                if marked:
                    self.disk.checkpoint("TRUNCATE")
        finally:
            self._conn.close()
        return marked


def _refuse(readings: list[NewReading], reason: str, drops: Counter[DropKey]) -> int:
    for r in readings:
        drops[(reason, r.device, r.stream)] += 1
    return len(readings)
