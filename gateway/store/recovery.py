"""Corrupt stores: telling corruption from other errors, moving a store aside, salvage.

`Outbox.open` runs `PRAGMA quick_check` (it reads the whole
file: seconds for a large store on an SD card, once per start). A file
SQLite finds is not a database, or malformed, is moved aside with its -wal
and -shm to `<name>.corrupt-<UTC time>` (an ERROR names both paths), a new
store starts (a new epoch), and meta `store_recovered` counts it. Then every
outbox row that can still be read from the old file is copied into the new
one with its epoch, seq and payload (under a new id), so it is sent again
(the consumer drops what it already had), together with the old sequences
(so confirmations for old epochs are still trusted) and drop counts;
quarantined rows stay in the old file. Rowids in stretches that could not
be read are counted as `store_corrupt` drops (an upper bound: rows already
acknowledged leave holes that count too) and logged. The copy is one
transaction; until it commits, meta `salvage_from` names the old file and
the next start tries again. Errors that say nothing about the file (locked,
no permission, no room) are `StoreError`s and move nothing. A second corrupt
file gets the same treatment: the gateway never stops on one.

`is_corruption`, `aside_name` and `valid_outbox_row` are pure decisions;
`move_aside` renames the files; `salvage` copies what `store_salvage.py`
can still read out of the old file into the new store.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.core.envelope import Envelope, decode
from gateway.store.salvage import (
    DROP_COLUMNS,
    OUTBOX_COLUMNS,
    SEQUENCE_COLUMNS,
    SalvageTally,
    salvage_rows,
)
from gateway.store.schema import DropKey
from gateway.store.sql import StoreError, set_meta, transaction

log = logging.getLogger("gateway.store")  # one logger for the whole store, as operators see it

# SQLite result codes (the primary code is the low byte of an extended one).
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26


def is_corruption(exc: BaseException) -> bool:
    """True when SQLite says the file is not a database or is malformed."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return True
    text = str(exc)
    return "file is not a database" in text or "malformed" in text


def aside_name(name: str, now: float, taken: Callable[[str], bool]) -> str:
    """`outbox.sqlite` -> `outbox.sqlite.corrupt-20261126T210000Z` (`.2`, `.3`, ... when taken)."""
    base = f"{name}.corrupt-{datetime.fromtimestamp(now, UTC).strftime('%Y%m%dT%H%M%SZ')}"
    candidate, n = base, 1
    while taken(candidate):
        n += 1
        candidate = f"{base}.{n}"
    return candidate


def valid_outbox_row(row: tuple[Any, ...]) -> bool:
    """True when a row read back from a damaged store (as `OUTBOX_COLUMNS`) is whole.

    Its payload must decode and carry the identity its columns say.
    """
    if len(row) != len(OUTBOX_COLUMNS):
        return False
    epoch, device, stream, seq, qos, ts, topic, payload, confirm, acked_at, resends, mono, boot = row
    if not (mono is None or isinstance(mono, int | float)) or not (boot is None
                                                                   or isinstance(boot, str)):
        return False
    if not all(isinstance(v, str) and v for v in (epoch, device, stream, topic)):
        return False
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (seq, resends)):
        return False
    if qos not in (1, 2) or confirm not in (0, 1) or not isinstance(payload, bytes):
        return False
    if not isinstance(ts, int | float) or not (acked_at is None or isinstance(acked_at, int | float)):
        return False
    env = decode(payload)
    return isinstance(env, Envelope) and (env.epoch, env.device, env.stream, env.seq) == (
        epoch, device, stream, seq)


def move_aside(path: Path, now: float) -> Path:
    """Rename a corrupt store with its -wal and -shm to `<name>.corrupt-<UTC time>`.

    The -wal goes first: a -wal left behind beside a new store would be
    replayed into it.

    Raises:
        StoreError: the files cannot be renamed.
    """
    def taken(name: str) -> bool:
        return any(os.path.lexists(path.with_name(name + suffix))
                   for suffix in ("", "-wal", "-shm"))

    aside = path.with_name(aside_name(path.name, now, taken))
    try:
        for suffix in ("-wal", "-shm", ""):
            source = path.with_name(path.name + suffix)
            if os.path.lexists(source):
                os.replace(source, aside.with_name(aside.name + suffix))
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"store {path} is corrupt and cannot be moved aside to {aside}: "
                         f"{exc}") from exc
    return aside


@dataclass
class _Salvaged:
    """What a salvage copied and what it could not."""

    rows: int = 0
    damaged: int = 0  # rows read whose payload does not match their identity
    lost: int = 0
    unbounded: bool = False
    sequences: int = 0
    drops: int = 0

    @property
    def whole(self) -> bool:
        return self.lost == 0 and not self.unbounded


def salvage(conn: sqlite3.Connection, path: Path, epoch: str, old: Path,
            write: Callable[[Callable[[], None]], None]) -> None:
    """Copy what can still be read out of the corrupt store `old` into the store at `path`.

    One transaction, run by `write` (which makes room on a full disk); `epoch`
    is the new store's, whose counters the old file must not touch.
    """
    if not old.exists():
        log.error("store %s: the corrupt store %s to salvage from is gone; nothing salvaged",
                  path, old)
        write(lambda: _forget_salvage(conn))
        return
    try:
        src = sqlite3.connect(old, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        log.error("store %s: cannot open %s to salvage from it (%s); the next start tries "
                  "again", path, old, exc)
        return
    outcome: list[_Salvaged] = []
    try:
        src.execute("PRAGMA query_only=1")
        write(lambda: outcome.append(_copy_salvage(conn, path, epoch, src, old)))
    except sqlite3.Error as exc:
        log.error("store %s: the readings salvaged from %s could not be written (%s); the "
                  "next start tries again", path, old, exc)
        return
    finally:
        src.close()
    got = outcome[-1]
    lost = ("an unknown number of them (counted as store_lost_unknown in `status`)"
            if got.unbounded else
            f"{got.lost} (rowids in unreadable stretches plus damaged rows: an upper bound, "
            "counted as store_corrupt drops)")
    log.log(logging.WARNING if got.whole else logging.ERROR,
            "store %s: salvaged %d stored readings from %s (sent again; the consumer drops "
            "those it has), %d stream counters and %d drop counts; could not be read: %s. "
            "Delete %s once it is no longer needed", path, got.rows, old, got.sequences,
            got.drops, lost, old)


def _forget_salvage(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM meta WHERE key = 'salvage_from'")


def _copy_salvage(conn: sqlite3.Connection, path: Path, epoch: str, src: sqlite3.Connection,
                  old: Path) -> _Salvaged:
    """The salvage transaction: rows, counters, drop counts, the recovery count."""
    rows_tally, seq_tally, drop_tally = SalvageTally(), SalvageTally(), SalvageTally()
    got = _Salvaged()
    top: dict[tuple[str, str, str], int] = {}
    with transaction(conn):
        chunk: list[tuple[Any, ...]] = []
        for row in salvage_rows(src, "outbox", OUTBOX_COLUMNS, rows_tally):
            if not valid_outbox_row(row):
                got.damaged += 1
                continue
            chunk.append(row)
            key = (row[0], row[1], row[2])
            top[key] = max(top.get(key, 0), row[3])
            if len(chunk) >= 500:
                got.rows += _insert_salvaged(conn, chunk)
        got.rows += _insert_salvaged(conn, chunk)
        for old_epoch, device, stream, seq in salvage_rows(src, "sequences", SEQUENCE_COLUMNS,
                                                           seq_tally):
            if all(isinstance(v, str) for v in (old_epoch, device, stream)) \
                    and isinstance(seq, int) and old_epoch != epoch:
                top[(old_epoch, device, stream)] = max(top.get((old_epoch, device, stream), 0), seq)
        conn.executemany(
            "INSERT INTO sequences(epoch, device, stream, last_seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(epoch, device, stream) DO UPDATE SET "
            "last_seq = max(last_seq, excluded.last_seq)",
            [(*key, seq) for key, seq in top.items()])
        got.sequences = len(top)
        drops: Counter[DropKey] = Counter()
        for reason, device, stream, count in salvage_rows(src, "drops", DROP_COLUMNS,
                                                          drop_tally):
            if all(isinstance(v, str) for v in (reason, device, stream)) \
                    and isinstance(count, int) and count > 0:
                drops[(reason, device, stream)] += count
        got.drops = len(drops)
        got.lost = rows_tally.unreadable + got.damaged
        got.unbounded = rows_tally.unbounded
        if got.lost:
            drops[("store_corrupt", "*", "*")] += got.lost
        conn.executemany(
            "INSERT INTO drops(reason, device, stream, count) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(reason, device, stream) DO UPDATE SET count = count + excluded.count",
            [(*key, n) for key, n in drops.items()])
        # The old file's count, or the files moved aside so far when its meta is gone too.
        asides = sum(1 for p in path.parent.glob(f"{glob.escape(path.name)}.corrupt-*")
                     if not p.name.endswith(("-wal", "-shm")))
        set_meta(conn, "store_recovered",
                 str(max(_old_count(src, "store_recovered") + 1, asides)))
        if got.unbounded:  # how many readings were lost cannot be known: counted apart
            set_meta(conn, "store_lost_unknown", str(_old_count(src, "store_lost_unknown") + 1))
            set_meta(conn, "store_lost_unknown_last", str(old))
        set_meta(conn, "store_recovered_last", json.dumps(
            {"at": round(time.time(), 3), "moved_to": str(old), "salvaged": got.rows,
             "lost": None if got.unbounded else got.lost}, separators=(",", ":")))
        conn.execute("DELETE FROM meta WHERE key = 'salvage_from'")
    return got


def _insert_salvaged(conn: sqlite3.Connection, chunk: list[tuple[Any, ...]]) -> int:
    """Insert salvaged outbox rows (new ids, in their old order); empties `chunk`."""
    conn.executemany(
        "INSERT INTO outbox(epoch, device, stream, seq, qos, ts, topic, payload, confirm, "
        "acked_at, resends, mono, boot) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", chunk)
    count = len(chunk)
    chunk.clear()
    return count


def _old_count(src: sqlite3.Connection, key: str) -> int:
    """A count the old store kept in its meta (`store_recovered`, ...), when it can be read."""
    try:
        row = src.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row is not None else 0
    except (sqlite3.DatabaseError, ValueError, TypeError):
        return 0
