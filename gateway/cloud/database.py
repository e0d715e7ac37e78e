"""The consumer's database: `readings`, per-stream counters and reject counts.

Two backends with one interface, `ReadingsDB`: a SQLite file (default) or
PostgreSQL (psycopg 3). `store_batch()` inserts a batch of readings in one
transaction, skipping identities already stored, and adds the batch's
per-stream counters in the same transaction, so a reading and the counters
that account for it commit together (the inbox pattern: the caller acks the
broker only after this returns).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol

from gateway.cloud import gateways, pg_schema
from gateway.cloud.admission import Refusal
from gateway.cloud.batch_sql import Dialect, write_batch
from gateway.config.consumer_config import is_postgres_url
from gateway.core.envelope import Envelope, format_ts
from gateway.core.extras import POSTGRES
from gateway.core.presence import GatewayStatus

DEFAULT_MAX_SEQ_JUMP = 1_000_000
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # JSON text's escape of NUL
# Columns of stream_counters added after the first schema: (name, SQLite type, PostgreSQL type,
# default for rows written before). Rows of old databases counted gaps from seq 1.
_ADDED_COUNTER_COLUMNS = (
    ("first_seq", "INTEGER NOT NULL DEFAULT 1", "BIGINT NOT NULL DEFAULT 1"),
    ("before_first", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    ("last_seen", "TEXT", "TIMESTAMPTZ"),
    ("lag_s", "REAL", "DOUBLE PRECISION"),
    ("jump_seq", "INTEGER", "BIGINT"),  # the last seq refused as a jump, until the stream goes on
    ("dropped_by_gateway", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
    ("dropped_upto", "INTEGER NOT NULL DEFAULT 0", "BIGINT NOT NULL DEFAULT 0"),
)
_REJECTED_TABLE = ("CREATE TABLE IF NOT EXISTS rejected_payloads (topic TEXT NOT NULL, "
                   "payload TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, "
                   "received_at {} NOT NULL)")


class ReadingsDB(Protocol):
    """Where the consumer writes."""

    def store_batch(self, readings: list[Envelope], rejects: Counter[str],
                    refused: Sequence[Refusal] = (), skipped: list[tuple[str, Envelope]] | None = None
                    ) -> tuple[int, int]:
        """Store a batch; returns (fresh, duplicates). Raises the driver's error on failure.

        A reading whose text cannot be stored (NUL, lone surrogates) is not stored: it is
        counted as the reject `bad_field`, in the database and, after the commit, in `rejects`;
        so is a reading whose seq lies more than `max_seq_jump` beyond its stream's max_seq
        (`seq_jump`). Both are appended to `skipped` with their reason. `refused` (payloads refused before the
        database) go to `rejected_payloads` in the same transaction.
        """

    def store_refused(self, refused: Sequence[Refusal], rejects: Counter[str]) -> None:
        """Write refused payloads and reject counts alone, in one transaction."""

    def store_statuses(self, statuses: list[GatewayStatus]) -> None:
        """Replace the `gateways` rows of these gateways, in one transaction."""

    def close(self) -> None:
        """Close the connection."""


def _row(env: Envelope, received_at: str, jsonb: bool) -> tuple[Any, ...] | None:
    """The `readings` row of a reading, or None when a backend cannot store its text
    (`jsonb`: nor a NUL escaped in its value, which PostgreSQL's jsonb cannot hold)."""
    value = value_text(env.value)
    if not _storable("".join((env.gateway, env.epoch, env.device, env.stream, value,
                              env.unit or "", env.ts_quality or ""))):
        return None
    if jsonb and "\\u0000" in value and _ESCAPED_NUL.search(value):
        return None
    return (env.gateway, env.epoch, env.device, env.stream, env.seq, format_ts(env.ts), value,
            env.unit, received_at, env.ts_quality)


def value_text(value: Any) -> str:
    """A reading's value as compact JSON (a number as json.dumps writes it: its repr)."""
    kind = type(value)
    if kind is float or kind is int:  # finite: the decoder refuses NaN and infinities
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


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


def _rows(readings: list[Envelope], rejects: Counter[str], received_at: float,
          skipped: list[tuple[str, Envelope]], jsonb: bool = False
          ) -> tuple[list[tuple[Envelope, tuple[Any, ...]]], Counter[str]]:
    """The rows to insert, and the batch's reject counts with unstorable readings as bad_field."""
    rows = []
    all_rejects = Counter(rejects)
    received_text = format_ts(received_at)  # one commit, one time
    for env in readings:
        row = _row(env, received_text, jsonb)
        if row is None:
            all_rejects["bad_field"] += 1
            skipped.append(("bad_field", env))
        else:
            rows.append((env, row))
    return rows, all_rejects


def _fresh(outcomes: Sequence[tuple[Any, int, bool]]) -> tuple[int, int]:
    fresh = sum(1 for _, _, is_fresh in outcomes if is_fresh)
    return fresh, len(outcomes) - fresh


class SqliteReadings:
    """`readings` in a SQLite file (WAL mode, synchronous=FULL: acks follow commits)."""

    def __init__(self, path: Path, max_seq_jump: int = DEFAULT_MAX_SEQ_JUMP) -> None:
        self.max_seq_jump = max_seq_jump
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
        self._conn.execute(_REJECTED_TABLE.format("TEXT"))
        self._dialect = Dialect(self._conn.execute, self._conn.executemany, "?", "", "values")
        self._conn.execute(gateways.SQLITE_TABLE)

    def store_batch(self, readings: list[Envelope], rejects: Counter[str],
                    refused: Sequence[Refusal] = (), skipped: list[tuple[str, Envelope]] | None = None
                    ) -> tuple[int, int]:
        """See `ReadingsDB.store_batch`."""
        received_at = time.time()
        skipped = [] if skipped is None else skipped
        rows, all_rejects = _rows(readings, rejects, received_at, skipped)
        with self._transaction():
            outcomes, jumped = write_batch(self._dialect, rows, all_rejects, refused,
                                           received_at, self.max_seq_jump)
        skipped.extend(("seq_jump", env) for env in jumped)
        rejects.update(all_rejects - rejects)  # the caller counts unstorable readings too
        return _fresh(outcomes)

    def store_refused(self, refused: Sequence[Refusal], rejects: Counter[str]) -> None:
        """See `ReadingsDB.store_refused`."""
        with self._transaction():
            write_batch(self._dialect, [], Counter(rejects), refused, time.time(), 0)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def store_statuses(self, statuses: list[GatewayStatus]) -> None:
        """See `ReadingsDB.store_statuses`."""
        with self._conn:  # BEGIN ... COMMIT (ROLLBACK on an error)
            self._conn.execute("BEGIN IMMEDIATE")
            gateways.upsert_statuses(self._conn.execute, "?", statuses, time.time())

    def close(self) -> None:
        """See `ReadingsDB.close`."""
        self._conn.close()


class PostgresReadings:
    """`readings` in PostgreSQL."""

    def __init__(self, url: str, max_seq_jump: int = DEFAULT_MAX_SEQ_JUMP,
                 password: str | None = None) -> None:
        self.max_seq_jump = max_seq_jump
        try:
            import psycopg  # noqa: PLC0415 - only with PostgreSQL: loading it costs ~12 MB of RSS
        except ImportError as exc:
            raise POSTGRES.error("a postgresql:// database", exc) from exc

        self._url = conninfo(url, password)  # kept to reconnect after a lost connection
        self._conn = psycopg.connect(self._url, autocommit=False)
        with self._conn.cursor() as cur:
            pg_schema.prepare(cur.execute, [(name, pg_type) for name, _, pg_type
                                            in _ADDED_COUNTER_COLUMNS],
                              _REJECTED_TABLE.format("TIMESTAMPTZ"), gateways.POSTGRES_TABLE)
        self._conn.commit()

    def store_batch(self, readings: list[Envelope], rejects: Counter[str],
                    refused: Sequence[Refusal] = (), skipped: list[tuple[str, Envelope]] | None = None
                    ) -> tuple[int, int]:
        """See `ReadingsDB.store_batch`."""
        received_at = time.time()
        skipped = [] if skipped is None else skipped
        rows, all_rejects = _rows(readings, rejects, received_at, skipped, jsonb=True)
        with self._transaction() as dialect:
            outcomes, jumped = write_batch(dialect, rows, all_rejects, refused, received_at,
                                           self.max_seq_jump)
        skipped.extend(("seq_jump", env) for env in jumped)
        rejects.update(all_rejects - rejects)  # the caller counts unstorable readings too
        return _fresh(outcomes)

    def store_refused(self, refused: Sequence[Refusal], rejects: Counter[str]) -> None:
        """See `ReadingsDB.store_refused`."""
        with self._transaction() as dialect:
            write_batch(dialect, [], Counter(rejects), refused, time.time(), 0)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Dialect]:
        if self._conn.closed:  # lost with the server (a restart, a network cut): a new one
            import psycopg  # noqa: PLC0415 - loaded by __init__ already

            self._conn = psycopg.connect(self._url, autocommit=False)
        try:
            with self._conn.cursor() as cur:
                yield Dialect(cur.execute, cur.executemany, "%s", " FOR UPDATE", "unnest")
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise

    def store_statuses(self, statuses: list[GatewayStatus]) -> None:
        """See `ReadingsDB.store_statuses`."""
        try:
            with self._conn.cursor() as cur:
                gateways.upsert_statuses(cur.execute, "%s", statuses, time.time())
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise

    def close(self) -> None:
        """See `ReadingsDB.close`."""
        self._conn.close()


def conninfo(url: str, password: str | None) -> str:
    """What psycopg connects with: the URL, and the password of `database_password_file`."""
    if password is None:
        return url
    import psycopg  # noqa: PLC0415 - only with PostgreSQL, see PostgresReadings

    return psycopg.conninfo.make_conninfo(url, password=password)


def open_readings_db(database: str, max_seq_jump: int = DEFAULT_MAX_SEQ_JUMP,
                     password: str | None = None) -> ReadingsDB:
    """The backend a `database:` setting names (`password`: from database_password_file)."""
    if is_postgres_url(database):
        return PostgresReadings(database, max_seq_jump, password)
    return SqliteReadings(Path(database), max_seq_jump)


def read_gaps(database: str, password: str | None = None) -> int:
    """Gaps over every stream of the database a `database:` setting names, through a
    short read-only connection of its own (the metrics endpoint's thread).

    Raises:
        Exception: the driver's error when the database cannot be read.
    """
    # sum() of BIGINT is numeric on PostgreSQL, but overflows on SQLite: total() is a float.
    if is_postgres_url(database):
        query = "SELECT coalesce(sum(gaps), 0) FROM stream_counters"
        try:
            import psycopg  # noqa: PLC0415 - only with PostgreSQL, see PostgresReadings
        except ImportError as exc:
            raise POSTGRES.error("a postgresql:// database", exc) from exc

        with psycopg.connect(conninfo(database, password), connect_timeout=5) as conn:
            row = conn.execute(query).fetchone()
    else:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5.0)) as lite:
            row = lite.execute("SELECT total(gaps) FROM stream_counters").fetchone()
    return int(row[0]) if row is not None else 0
