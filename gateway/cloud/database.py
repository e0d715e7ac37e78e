"""The consumer's database: `readings`, per-stream counters and reject counts.

Two backends with one interface, `ReadingsDB`: a SQLite file (default) or
PostgreSQL (psycopg 3). `store_batch()` inserts a batch of readings in one
transaction, skipping identities already stored, and adds the batch's
per-stream counters in the same transaction, so a reading and the counters
that account for it commit together (the inbox pattern: the caller acks the
broker only after this returns).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

from gateway.config.consumer_config import is_postgres_url
from gateway.core.dedup import StreamCounters, StreamId, fold
from gateway.core.envelope import Envelope, format_ts
from gateway.core.extras import POSTGRES

_READINGS_COLUMNS = "gateway, epoch, device, stream, seq, ts, value, unit, received_at, ts_quality"
_KEY = "gateway, epoch, device, stream"
# Columns of stream_counters added after the first schema: (name, SQLite type, PostgreSQL type,
# default for rows written before). Rows of old databases counted gaps from seq 1.
_ADDED_COUNTER_COLUMNS = (
    ("first_seq", "INTEGER NOT NULL DEFAULT 1", "BIGINT NOT NULL DEFAULT 1"),
    ("before_first", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    ("last_seen", "TEXT", "TIMESTAMPTZ"),
    ("lag_s", "REAL", "DOUBLE PRECISION"),
    ("dropped_by_gateway", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    ("dropped_upto", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
)
_KEYS_PER_SELECT = 200


class ReadingsDB(Protocol):
    """Where the consumer writes."""

    def store_batch(self, readings: list[Envelope], rejects: Counter[str]) -> tuple[int, int]:
        """Store a batch; returns (fresh, duplicates). Raises the driver's error on failure.

        A reading whose text cannot be stored (NUL, lone surrogates) is not stored: it is
        counted as the reject `bad_field`, in the database and, after the commit, in `rejects`.
        """


    def close(self) -> None:
        """Close the connection."""


def _row(env: Envelope, received_at: str) -> tuple[Any, ...] | None:
    """The `readings` row of a reading, or None when a backend cannot store its text."""
    value = json.dumps(env.value, ensure_ascii=False, separators=(",", ":"))
    if not all(_storable(text) for text in (env.gateway, env.epoch, env.device, env.stream, value,
                                            env.unit or "", env.ts_quality or "")):
        return None
    return (env.gateway, env.epoch, env.device, env.stream, env.seq, format_ts(env.ts), value,
            env.unit, received_at, env.ts_quality)


def _storable(text: str) -> bool:
    """False for text that `decode` accepts ("\\ud800", "\\u0000") but a backend cannot store:
    lone surrogates (not UTF-8) and NUL (not in PostgreSQL text). Failing the whole batch on
    one of them would make the consumer retry it forever (docs/guarantees.md, "Rejected messages")."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rows(readings: list[Envelope], rejects: Counter[str], received_at: float
          ) -> tuple[list[tuple[Envelope, tuple[Any, ...]]], Counter[str]]:
    """The rows to insert, and the batch's reject counts with unstorable readings as bad_field."""
    rows = []
    all_rejects = Counter(rejects)
    received_text = format_ts(received_at)  # one commit, one time
    for env in readings:
        row = _row(env, received_text)
        if row is None:
            all_rejects["bad_field"] += 1
        else:
            rows.append((env, row))
    return rows, all_rejects


Execute = Callable[[str, Sequence[Any]], Any]  # runs one statement, returns a cursor


def update_counters(execute: Execute, mark: str, lock: str,
                    outcomes: list[tuple[StreamId, int, bool]], newest: dict[StreamId, float],
                    received_at: float, dropped: dict[StreamId, tuple[int, int]] | None = None
                    ) -> None:
    """Add a batch's outcomes to `stream_counters`, inside the caller's transaction.

    One rule for both backends and for concurrent consumers in a shared group:
    each stream's row is created if missing, then read (locked with `lock`, in
    key order, so two members never wait on each other in opposite orders),
    added to in Python (`StreamCounters.plus`) and written back whole. `mark`
    is the driver's parameter mark.
    """
    deltas = fold(outcomes)
    if not deltas:
        return
    keys = sorted(deltas)

    def q(sql: str) -> str:
        return sql if mark == "?" else sql.replace("?", mark)

    for key in keys:
        execute(q(f"INSERT INTO stream_counters({_KEY}, first_seq, max_seq, received, duplicates, "
                  "gaps, before_first) VALUES (?, ?, ?, ?, 0, 0, 0, 0, 0, 0) "
                  f"ON CONFLICT({_KEY}) DO NOTHING"), key)
    stored: dict[StreamId, StreamCounters] = {}
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start:start + _KEYS_PER_SELECT]
        values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
        cursor = execute(q(f"SELECT {_KEY}, first_seq, max_seq, received, duplicates, "
                           "before_first, dropped_by_gateway, dropped_upto FROM stream_counters "
                           f"WHERE ({_KEY}) IN (VALUES {values}) "
                           f"ORDER BY {_KEY}{lock}"), [part for key in chunk for part in key])
        for row in cursor.fetchall():
            stored[tuple(row[:4])] = StreamCounters(*(int(n) for n in row[4:]))
    seen = format_ts(received_at)
    for key in keys:
        after = stored.get(key, StreamCounters()).plus(deltas[key])
        if dropped and key in dropped:
            after = _count_dropped(execute, q, key, after, dropped[key])
        lag = received_at - newest[key] if key in newest else None
        execute(q("UPDATE stream_counters SET first_seq = ?, max_seq = ?, received = ?, "
                  "duplicates = ?, gaps = ?, before_first = ?, last_seen = ?, "
                  "lag_s = coalesce(?, lag_s), dropped_by_gateway = ?, dropped_upto = ? "
                  f"WHERE ({_KEY}) = (?, ?, ?, ?)"),
                (after.first_seq, after.max_seq, after.received, after.duplicates, after.gaps,
                 after.before_first, seen, lag, after.dropped_by_gateway, after.dropped_upto,
                 *key))


def _count_dropped(execute: Execute, q: Callable[[str], str], key: StreamId,
                   counters: StreamCounters, notice: tuple[int, int]) -> StreamCounters:
    """Count the seqs of a notice's new part that have not arrived (in this transaction)."""
    part = counters.dropped_range(*notice)
    if part is None:
        return counters
    arrived = execute(q(f"SELECT count(*) FROM readings WHERE ({_KEY}) = (?, ?, ?, ?) "
                        "AND seq BETWEEN ? AND ?"), (*key, *part)).fetchone()[0]
    return counters.with_dropped(part[1], part[1] - part[0] + 1 - int(arrived))


def _notices(readings: list[Envelope]) -> dict[StreamId, tuple[int, int]]:
    """The `dropped` ranges of a batch, merged per stream."""
    merged: dict[StreamId, tuple[int, int]] = {}
    for env in readings:
        if env.dropped is not None:
            key = (env.gateway, env.epoch, env.device, env.stream)
            old = merged.get(key, env.dropped)
            merged[key] = (min(old[0], env.dropped[0]), max(old[1], env.dropped[1]))
    return merged


def _newest(readings: list[Envelope]) -> dict[StreamId, float]:
    """The newest reading time per stream of a batch (for the stream's lag)."""
    newest: dict[StreamId, float] = {}
    for env in readings:
        key = (env.gateway, env.epoch, env.device, env.stream)
        if env.ts > newest.get(key, float("-inf")):
            newest[key] = env.ts
    return newest


class SqliteReadings:
    """`readings` in a SQLite file (WAL mode, synchronous=FULL: acks follow commits)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL").fetchone()
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        # `readings` is keyed by identity alone (WITHOUT ROWID, which sqlite-utils cannot
        # declare); the counter tables are plain keyed tables.
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS readings (
                gateway TEXT NOT NULL, epoch TEXT NOT NULL, device TEXT NOT NULL,
                stream TEXT NOT NULL, seq INTEGER NOT NULL, ts TEXT NOT NULL,
                value TEXT NOT NULL, unit TEXT, received_at TEXT NOT NULL, ts_quality TEXT,
                PRIMARY KEY (gateway, epoch, device, stream, seq)) WITHOUT ROWID""")
        if "ts_quality" not in {row[1] for row in self._conn.execute("PRAGMA table_info(readings)")}:
            self._conn.execute("ALTER TABLE readings ADD COLUMN ts_quality TEXT")
        import sqlite_utils  # noqa: PLC0415 - not for the gateway's metrics, which read gaps here

        db = sqlite_utils.Database(self._conn)
        db.create_table(
            "stream_counters",
            {"gateway": str, "epoch": str, "device": str, "stream": str, "max_seq": int,
             "received": int, "duplicates": int, "gaps": int},
            pk=("gateway", "epoch", "device", "stream"),
            not_null=("gateway", "epoch", "device", "stream", "max_seq", "received",
                      "duplicates", "gaps"),
            if_not_exists=True,
        )
        have = {column.name for column in db.table("stream_counters").columns}
        for name, sqlite_type, _ in _ADDED_COUNTER_COLUMNS:
            if name not in have:
                self._conn.execute(f"ALTER TABLE stream_counters ADD COLUMN {name} {sqlite_type}")
        db.create_table("consumer_rejects", {"reason": str, "count": int}, pk="reason",
                        not_null=("count",), if_not_exists=True)

    def store_batch(self, readings: list[Envelope], rejects: Counter[str]) -> tuple[int, int]:
        """See `ReadingsDB.store_batch`."""
        received_at = time.time()
        rows, all_rejects = _rows(readings, rejects, received_at)
        conn = self._conn
        outcomes: list[tuple[StreamId, int, bool]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for env, row in rows:
                cursor = conn.execute(
                    f"INSERT OR IGNORE INTO readings({_READINGS_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                outcomes.append(((env.gateway, env.epoch, env.device, env.stream), env.seq,
                                 cursor.rowcount == 1))
            update_counters(conn.execute, "?", "", outcomes, _newest(readings), received_at,
                            _notices(readings))
            conn.executemany(
                "INSERT INTO consumer_rejects(reason, count) VALUES (?, ?) "
                "ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count",
                list(all_rejects.items()),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        rejects.update(all_rejects - rejects)  # the caller counts unstorable readings too
        fresh = sum(1 for _, _, is_fresh in outcomes if is_fresh)
        return fresh, len(outcomes) - fresh

    def close(self) -> None:
        """See `ReadingsDB.close`."""
        self._conn.close()


class PostgresReadings:
    """`readings` in PostgreSQL."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg  # noqa: PLC0415 - only with PostgreSQL: loading it costs ~12 MB of RSS
        except ImportError as exc:
            raise POSTGRES.error("a postgresql:// database", exc) from exc

        self._conn = psycopg.connect(url, autocommit=False)
        with self._conn.cursor() as cur:
            cur.execute(
                """
                CREATE TABLE IF NOT EXISTS readings (
                    gateway TEXT NOT NULL, epoch TEXT NOT NULL, device TEXT NOT NULL,
                    stream TEXT NOT NULL, seq BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL,
                    value TEXT NOT NULL, unit TEXT, received_at TIMESTAMPTZ NOT NULL,
                    ts_quality TEXT,
                    PRIMARY KEY (gateway, epoch, device, stream, seq));
                ALTER TABLE readings ADD COLUMN IF NOT EXISTS ts_quality TEXT;
                CREATE TABLE IF NOT EXISTS stream_counters (
                    gateway TEXT NOT NULL, epoch TEXT NOT NULL, device TEXT NOT NULL,
                    stream TEXT NOT NULL, max_seq BIGINT NOT NULL, received BIGINT NOT NULL,
                    duplicates BIGINT NOT NULL, gaps BIGINT NOT NULL,
                    PRIMARY KEY (gateway, epoch, device, stream));
                CREATE TABLE IF NOT EXISTS consumer_rejects (
                    reason TEXT PRIMARY KEY, count BIGINT NOT NULL);
                """
            )
            for name, _, pg_type in _ADDED_COUNTER_COLUMNS:
                cur.execute(f"ALTER TABLE stream_counters ADD COLUMN IF NOT EXISTS {name} {pg_type}")
        self._conn.commit()

    def store_batch(self, readings: list[Envelope], rejects: Counter[str]) -> tuple[int, int]:
        """See `ReadingsDB.store_batch`."""
        received_at = time.time()
        rows, all_rejects = _rows(readings, rejects, received_at)
        outcomes: list[tuple[StreamId, int, bool]] = []
        try:
            with self._conn.cursor() as cur:
                for env, row in rows:
                    cur.execute(
                        f"INSERT INTO readings({_READINGS_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        row)
                    outcomes.append(((env.gateway, env.epoch, env.device, env.stream), env.seq,
                                     cur.rowcount == 1))
                update_counters(cur.execute, "%s", " FOR UPDATE", outcomes, _newest(readings),
                                received_at, _notices(readings))
                for reason, count in all_rejects.items():
                    cur.execute(
                        "INSERT INTO consumer_rejects AS r (reason, count) VALUES (%s, %s) "
                        "ON CONFLICT (reason) DO UPDATE SET count = r.count + excluded.count",
                        (reason, count))
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        rejects.update(all_rejects - rejects)  # the caller counts unstorable readings too
        fresh = sum(1 for _, _, is_fresh in outcomes if is_fresh)
        return fresh, len(outcomes) - fresh

    def close(self) -> None:
        """See `ReadingsDB.close`."""
        self._conn.close()


def open_readings_db(database: str) -> ReadingsDB:
    """The backend a `database:` setting names."""
    if is_postgres_url(database):
        return PostgresReadings(database)
    return SqliteReadings(Path(database))


def read_gaps(database: str) -> int:
    """Gaps over every stream of the database a `database:` setting names, through a
    short read-only connection of its own (the metrics endpoint's thread).

    Raises:
        Exception: the driver's error when the database cannot be read.
    """
    query = "SELECT coalesce(sum(gaps), 0) FROM stream_counters"
    if is_postgres_url(database):
        try:
            import psycopg  # noqa: PLC0415 - only with PostgreSQL, see PostgresReadings
        except ImportError as exc:
            raise POSTGRES.error("a postgresql:// database", exc) from exc

        with psycopg.connect(database, connect_timeout=5) as conn:
            row = conn.execute(query).fetchone()
    else:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5.0)) as lite:
            row = lite.execute(query).fetchone()
    return int(row[0]) if row is not None else 0
