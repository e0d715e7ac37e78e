"""The consumer's PostgreSQL schema on a real server: made, migrated, made by several
consumers at once, and the TimescaleDB statements (the extension is not installed on
the test machines: its statements are checked as SQL, the key change on a real table).

PostgreSQL is the server at tests.support.postgres.PG_URL (trust auth, database `test`);
each test works in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from gateway.cloud import pg_schema
from gateway.cloud.database import PostgresReadings
from gateway.core.envelope import Envelope
from tests.support.postgres import own_schema

T0 = 1_700_000_000.0
# `readings` as consumers before 0.5.0 made it: value as text.
OLD_READINGS = """CREATE TABLE readings (
    gateway TEXT NOT NULL, epoch TEXT NOT NULL, device TEXT NOT NULL, stream TEXT NOT NULL,
    seq BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, value TEXT NOT NULL, unit TEXT,
    received_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (gateway, epoch, device, stream, seq))"""


@pytest.fixture
def url() -> Iterator[str]:
    with own_schema() as schema_url:
        yield schema_url


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql.encode()).fetchall()


def column_types(url: str) -> dict[object, object]:
    return dict(query(url, "SELECT column_name, data_type FROM information_schema.columns "
                      "WHERE table_schema = current_schema() AND table_name = 'readings'"))


def reading(seq: int, value: object = 21.5) -> Envelope:
    return Envelope("gw-1", "E1", "climate", "temperature", seq, T0 + seq, value, "°C")


def test_a_new_database_has_jsonb_values_timestamptz_times_and_a_per_stream_time_index(
        url: str) -> None:
    PostgresReadings(url).close()
    types = column_types(url)
    assert types["value"] == "jsonb"
    assert types["ts"] == types["received_at"] == "timestamp with time zone"
    [(definition,)] = query(url, "SELECT indexdef FROM pg_indexes WHERE schemaname = "
                            "current_schema() AND indexname = 'readings_stream_ts'")
    assert "(gateway, device, stream, ts)" in str(definition)
    plan = "\n".join(str(row[0]) for row in query(
        url, "EXPLAIN SELECT value FROM readings WHERE gateway = 'g' AND device = 'd' AND "
        "stream = 's' AND ts > now() - interval '1 hour' ORDER BY ts"))
    assert "readings_stream_ts" in plan


def test_a_text_value_table_is_migrated_keeping_every_row(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(OLD_READINGS.encode())
        for seq, text in ((1, "21.5"), (2, '"on"'), (3, '{"a": [1, null]}'), (4, "false")):
            conn.execute("INSERT INTO readings VALUES ('gw-1', 'E1', 'climate', 'temperature', "
                         "%s, now(), %s, NULL, now())", (seq, text))
    db = PostgresReadings(url)
    try:
        assert column_types(url)["value"] == "jsonb"
        assert query(url, "SELECT seq, value FROM readings ORDER BY seq") == [
            (1, 21.5), (2, "on"), (3, {"a": [1, None]}), (4, False)]
        assert db.store_batch([reading(2), reading(5, value=[1, "x"])], Counter()) == (1, 1)
        assert query(url, "SELECT count(*), count(ts_quality) FROM readings") == [(5, 0)]
    finally:
        db.close()
    PostgresReadings(url).close()  # a second start finds nothing to migrate
    assert query(url, "SELECT count(*) FROM readings") == [(5,)]


def test_consumers_starting_together_on_an_empty_schema_all_start(url: str) -> None:
    """Shared-group members started at once: without the schema lock, CREATE TABLE IF NOT
    EXISTS races and one of them fails on the catalog's unique index."""
    members = 6
    barrier = threading.Barrier(members)
    failures: list[BaseException] = []
    opened: list[PostgresReadings] = []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(PostgresReadings(url))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(members)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for db in opened:
        db.close()
    assert failures == [] and len(opened) == members


def test_conversions_name_only_the_columns_of_an_older_type() -> None:
    assert pg_schema.conversions({"value": "jsonb", "ts": "timestamp with time zone",
                                  "received_at": "timestamp with time zone"}) == []
    assert pg_schema.conversions({"value": "text", "ts": "text",
                                  "received_at": "timestamp with time zone"}) == [
        "ALTER TABLE readings ALTER COLUMN value TYPE JSONB USING value::jsonb",
        "ALTER TABLE readings ALTER COLUMN ts TYPE TIMESTAMPTZ USING ts::timestamptz"]


def test_the_hypertable_statements_key_readings_by_identity_and_ts(url: str) -> None:
    """create_hypertable needs `ts` in every unique index: the key change runs on a real
    table here, the call itself (TimescaleDB is not installed) is checked as text."""
    db = PostgresReadings(url)
    try:
        db.store_batch([reading(1), reading(2)], Counter())
        *key_change, create = pg_schema.hypertable_statements()
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in key_change:
                conn.execute(statement.encode())
        key = [row[0] for row in query(
            url, "SELECT k.column_name FROM information_schema.table_constraints c JOIN "
            "information_schema.key_column_usage k USING (constraint_schema, constraint_name) "
            "WHERE c.table_schema = current_schema() AND c.table_name = 'readings' "
            "AND c.constraint_type = 'PRIMARY KEY' ORDER BY k.ordinal_position")]
        assert key == ["gateway", "epoch", "device", "stream", "seq", "ts"]
        assert db.store_batch([reading(2), reading(3)], Counter()) == (1, 1)  # still dedups
        assert create.startswith("SELECT create_hypertable('readings', 'ts'")
        assert "migrate_data => TRUE" in create and "if_not_exists => TRUE" in create
        assert query(url, "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'") == []
    finally:
        db.close()
