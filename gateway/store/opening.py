"""Opening the store file: connect, check it and its schema version, read its meta.

SQLite's verdict on the file decides what happens when opening fails: a
file that is not a database or is malformed (or fails `PRAGMA quick_check`,
run after an unclean stop or on a small store: `_needs_check`)
is moved aside and a new one started (see `store_recovery.py`); a full disk
gets the reserve given back once (see `store_space.py`); anything else is a
`StoreError` and moves nothing. Deciding the epoch is the outbox's
(`store.py`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.store.recovery import is_corruption, move_aside
from gateway.store.schema import SCHEMA_VERSION, create_schema
from gateway.store.space import Reserve, is_disk_full, reserve_path
from gateway.store.sql import BUSY_TIMEOUT_MS, StoreError

log = logging.getLogger("gateway.store")  # one logger for the whole store, as operators see it


class _Corrupt(Exception):
    """The store file is not a usable SQLite database."""


class _NoRoom(Exception):
    """Opening the store needed disk space there was none of."""


@dataclass(frozen=True)
class OpenedFile:
    """A store file opened and checked, before the outbox decides its epoch."""

    conn: sqlite3.Connection
    meta: dict[str, str]
    reserve: Reserve
    aside: Path | None  # where a corrupt file was moved to, to salvage from


def open_file(path: Path, now: float | None = None) -> OpenedFile:
    """Open (or create) the store file; a corrupt one is moved aside (named for `now`) first.

    Raises:
        StoreError: the file or its directory cannot be used, or its schema
            version is not this release's.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from exc
    reserve = Reserve(reserve_path(path))
    aside: Path | None = None
    try:
        if _emptied(path, reserve):
            raise _Corrupt(f"it is empty (0 bytes) although the reserve {reserve.path} beside "
                           "it shows a store was there: the readings it held are lost")
        conn, meta = _connect_with_room(path, reserve)
    except _Corrupt as bad:
        aside = move_aside(path, time.time() if now is None else now)
        log.error("store %s is corrupt (%s): moved it aside to %s (with its -wal and -shm) "
                  "and started a new store; salvaging the readings it still holds",
                  path, bad, aside)
        try:
            conn, meta = _connect_with_room(path, reserve)
        except _Corrupt as again:
            raise StoreError(f"store {path}: a new store is corrupt at once ({again}); "
                             "check the disk") from again
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        conn.close()
        raise StoreError(f"store {path} has schema version {meta.get('schema_version')}, "
                         f"this release reads {SCHEMA_VERSION}")
    return OpenedFile(conn, meta, reserve, aside)


def _emptied(path: Path, reserve: Reserve) -> bool:
    """True for a zero-length store file beside a reserve: a store that existed was
    truncated (SQLite would take it for a new, empty database)."""
    try:
        return path.stat().st_size == 0 and os.path.lexists(reserve.path)
    except OSError:
        return False


# Every commit writes each page it touches whole to the WAL, and again at the checkpoint:
# at a few readings per commit, 1 KiB pages write ~4x fewer bytes to flash than SQLite's
# default 4 KiB (bench/README.md, "Flash wear"). A store made with another size keeps it.
PAGE_SIZE = 1024
CHECK_ALWAYS_BYTES = 16 * 1024 * 1024  # a store up to this size is checked at every start


def _connect(path: Path) -> tuple[sqlite3.Connection, dict[str, str]]:
    """Open and check the store file; its meta.

    Raises:
        _Corrupt: not a database, malformed, or failing `PRAGMA quick_check`.
        _NoRoom: the disk has no room for what opening writes.
        StoreError: anything else (permissions, a directory in the way, ...).
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only in a new file
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if _needs_check(conn, path):
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise _Corrupt("quick_check: " + "; ".join(problems))
        conn.execute("PRAGMA synchronous=FULL")
        create_schema(conn)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except _Corrupt:
        conn.close()
        raise
    except (sqlite3.Error, OSError) as exc:
        conn.close()
        if is_corruption(exc):
            raise _Corrupt(str(exc)) from exc
        if is_disk_full(exc):
            raise _NoRoom(str(exc)) from exc
        raise StoreError(f"cannot open the store {path}: {exc}") from exc
    return conn, meta


def _needs_check(conn: sqlite3.Connection, path: Path) -> bool:
    """Whether opening runs `PRAGMA quick_check`, which reads the whole file: after a stop
    that was not clean (a crash, a power cut, a task that died on a damaged page), or when
    the file is small enough that reading it is cheap. A big store stopped cleanly is not
    read whole at start (a 1M-reading backlog would wait seconds for it); its schema and
    meta are still read, and damage met later ends the run uncleanly, so the next start
    checks."""
    try:
        if path.stat().st_size <= CHECK_ALWAYS_BYTES:
            return True
        row = conn.execute("SELECT value FROM meta WHERE key = 'clean_stop'").fetchone()
    except (sqlite3.Error, OSError):
        return True
    return row is None or row[0] != "1"


def _connect_with_room(path: Path, reserve: Reserve) -> tuple[sqlite3.Connection, dict[str, str]]:
    """`_connect`, giving the reserve back once if the disk is full."""
    hint = "free some space on its disk: opening needs a few hundred KiB"
    try:
        return _connect(path)
    except _NoRoom as exc:
        if not reserve.release():
            raise StoreError(f"cannot open the store {path}: the disk is full ({exc}) and no "
                             f"reserve is left to give back; {hint}") from None
    try:
        return _connect(path)
    except _NoRoom as exc:
        raise StoreError(f"cannot open the store {path}: the disk is full ({exc}) even with "
                         f"the reserve given back; {hint}") from None
