"""The consumer's PostgreSQL schema, made or brought up to date when a consumer starts.

Everything runs in one transaction under a transaction-level advisory lock, so
the members of a shared group starting together take turns: without it two of
them can both find a table missing and the second `CREATE TABLE IF NOT EXISTS`
fails on the catalog's unique index.

`readings.value` is `jsonb` (a database made before 0.5.0 has `text`: it is
converted, which rewrites the table once); `ts` and `received_at` are
`timestamptz`; `readings_stream_ts` serves per-stream time queries. With the
`timescaledb` extension installed in the database, `readings` becomes a
hypertable partitioned by `ts` (its primary key then includes `ts`, which
TimescaleDB requires of every unique index).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("gateway.consumer")

Execute = Callable[..., Any]  # a psycopg cursor's execute
LOCK_KEY = 0x6D71_7467_7363_6D61  # pg_advisory_xact_lock's key for the schema ("mqtgscma")
READINGS = """CREATE TABLE IF NOT EXISTS readings (
    gateway TEXT NOT NULL, epoch TEXT NOT NULL, device TEXT NOT NULL, stream TEXT NOT NULL,
    seq BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, value JSONB NOT NULL, unit TEXT,
    received_at TIMESTAMPTZ NOT NULL, ts_quality TEXT,
    PRIMARY KEY (gateway, epoch, device, stream, seq))"""
TIME_INDEX = ("CREATE INDEX IF NOT EXISTS readings_stream_ts "
              "ON readings (gateway, device, stream, ts)")
COUNTERS = """CREATE TABLE IF NOT EXISTS stream_counters (
    gateway TEXT NOT NULL, epoch TEXT NOT NULL, device TEXT NOT NULL, stream TEXT NOT NULL,
    max_seq BIGINT NOT NULL, received BIGINT NOT NULL, duplicates BIGINT NOT NULL,
    gaps BIGINT NOT NULL, PRIMARY KEY (gateway, epoch, device, stream))"""
REJECTS = "CREATE TABLE IF NOT EXISTS consumer_rejects (reason TEXT PRIMARY KEY, count BIGINT NOT NULL)"
# Column -> the type it must have, and how rows of an older type are converted.
CONVERSIONS = (
    ("value", "jsonb", "value::jsonb"),
    ("ts", "timestamp with time zone", "ts::timestamptz"),
    ("received_at", "timestamp with time zone", "received_at::timestamptz"),
)
_TYPE_NAMES = {"jsonb": "JSONB", "timestamp with time zone": "TIMESTAMPTZ"}


def conversions(types: dict[str, str]) -> list[str]:
    """The ALTER TABLE statements that bring `readings` columns of the types found
    (information_schema's `data_type` by column) to the current schema."""
    return [f"ALTER TABLE readings ALTER COLUMN {column} TYPE {_TYPE_NAMES[wanted]} "
            f"USING {using}"
            for column, wanted, using in CONVERSIONS
            if column in types and types[column] != wanted]


def hypertable_statements() -> list[str]:
    """What makes `readings` a TimescaleDB hypertable partitioned by `ts` (run once, when
    the extension is there and `readings` is not one yet)."""
    return [
        "ALTER TABLE readings DROP CONSTRAINT IF EXISTS readings_pkey",
        "ALTER TABLE readings ADD PRIMARY KEY (gateway, epoch, device, stream, seq, ts)",
        "SELECT create_hypertable('readings', 'ts', chunk_time_interval => "
        "INTERVAL '1 day', if_not_exists => TRUE, migrate_data => TRUE)",
    ]


def _column_types(execute: Execute) -> dict[str, str]:
    cursor = execute("SELECT column_name, data_type FROM information_schema.columns "
                     "WHERE table_schema = current_schema() AND table_name = 'readings'")
    return {str(name): str(kind) for name, kind in cursor.fetchall()}


def _wants_hypertable(execute: Execute) -> bool:
    if execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None:
        return False
    return execute("SELECT 1 FROM timescaledb_information.hypertables WHERE "
                   "hypertable_schema = current_schema() AND hypertable_name = 'readings'"
                   ).fetchone() is None


def prepare(execute: Execute, counter_columns: Sequence[tuple[str, str]],
            *tables: str) -> None:
    """Create or migrate the schema inside the caller's transaction; `counter_columns`
    (name, type) are added to `stream_counters` when missing, `tables` created."""
    execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    execute(READINGS)
    execute("ALTER TABLE readings ADD COLUMN IF NOT EXISTS ts_quality TEXT")
    for statement in conversions(_column_types(execute)):
        log.info("database: converting readings: %s (rewrites the table once)", statement)
        execute(statement)
    execute(TIME_INDEX)
    if _wants_hypertable(execute):
        log.info("database: timescaledb is installed: making readings a hypertable on ts")
        for statement in hypertable_statements():
            execute(statement)
    execute(COUNTERS)
    execute(REJECTS)
    for name, pg_type in counter_columns:
        execute(f"ALTER TABLE stream_counters ADD COLUMN IF NOT EXISTS {name} {pg_type}")
    for table in tables:
        execute(table)
