"""The consumer's database on real SQLite files and a real PostgreSQL server.

Every test runs on both backends. PostgreSQL is the server at PG_URL (trust
auth, on this machine and in CI); each test gets a schema of its own, so
tests never see each other's rows. A PostgreSQL that does not answer fails
the test: it is not skipped.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.cloud.database import ReadingsDB, open_readings_db
from gateway.core.envelope import Envelope, format_ts

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_700_000_000.125
READINGS_COLUMNS = ["gateway", "epoch", "device", "stream", "seq", "ts", "value", "unit",
                    "received_at", "ts_quality"]
READINGS_KEY = ["gateway", "epoch", "device", "stream", "seq"]


@dataclass
class Backend:
    """A consumer database under test, and a way to look into it from outside."""

    name: str
    database: str  # what `database:` in the consumer config would say
    query: Callable[[str], list[tuple[Any, ...]]]

    def open(self) -> ReadingsDB:
        return open_readings_db(self.database)


def _sqlite_backend(tmp_path: Path) -> Iterator[Backend]:
    path = tmp_path / "consumer.sqlite"

    def query(sql: str) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(path)) as conn:
            return conn.execute(sql).fetchall()

    yield Backend("sqlite", str(path), query)


def _postgres_backend() -> Iterator[Backend]:
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} does not answer ({exc}); the consumer's PostgreSQL "
                    "backend cannot be tested. Start it (trust auth, database 'test').")
    schema = f"t_{secrets.token_hex(6)}"
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            with psycopg.connect(url, autocommit=True) as reader:

                def query(sql: str) -> list[tuple[Any, ...]]:
                    return reader.execute(sql).fetchall()

                yield Backend("postgresql", url, query)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield from _sqlite_backend(tmp_path)
    else:
        yield from _postgres_backend()


@pytest.fixture
def db(backend: Backend) -> Iterator[ReadingsDB]:
    database = backend.open()
    yield database
    database.close()


def env(seq: int, *, stream: str = "temperature", device: str = "climate", epoch: str = "E1",
        gateway: str = "gw-1", value: Any = 21.5, unit: str | None = "°C",
        ts: float | None = None, ts_quality: str | None = None) -> Envelope:
    return Envelope(gateway, epoch, device, stream, seq, T0 + seq if ts is None else ts, value, unit,
                    ts_quality=ts_quality)


def counters(backend: Backend, stream: str = "temperature") -> tuple[int, int, int, int]:
    rows = backend.query("SELECT max_seq, received, duplicates, gaps FROM stream_counters "
                         f"WHERE stream = '{stream}'")
    assert len(rows) == 1, rows
    return tuple(rows[0])


def identities(backend: Backend) -> list[tuple[Any, ...]]:
    return backend.query("SELECT gateway, epoch, device, stream, seq FROM readings "
                         "ORDER BY gateway, epoch, device, stream, seq")


def rejects(backend: Backend) -> dict[str, int]:
    return dict(backend.query("SELECT reason, count FROM consumer_rejects"))


def as_utc(value: Any) -> str:
    """A stored time as RFC 3339 text: SQLite keeps text, PostgreSQL a timestamptz."""
    if isinstance(value, datetime):
        return format_ts(value.astimezone(UTC).timestamp())
    assert isinstance(value, str)
    return value


# -- schema ----------------------------------------------------------------
def test_readings_has_exactly_the_contract_columns_and_key(backend: Backend, db: ReadingsDB
                                                           ) -> None:
    if backend.name == "sqlite":
        info = backend.query("PRAGMA table_info(readings)")
        columns = [row[1] for row in info]
        key = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        types = {row[1]: row[2].lower() for row in info}
        assert types["value"] == "text" and types["ts"] == "text"
    else:
        columns = [row[0] for row in backend.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = 'readings' ORDER BY ordinal_position")]
        key = [row[0] for row in backend.query(
            "SELECT k.column_name FROM information_schema.table_constraints c "
            "JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) "
            "WHERE c.table_schema = current_schema() AND c.table_name = 'readings' "
            "AND c.constraint_type = 'PRIMARY KEY' ORDER BY k.ordinal_position")]
        types = dict(backend.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = 'readings'"))
        assert types["value"] == "jsonb"
        assert types["ts"] == types["received_at"] == "timestamp with time zone"
    assert columns == READINGS_COLUMNS
    assert key == READINGS_KEY
    assert backend.query("SELECT count(*) FROM stream_counters") == [(0,)]
    assert backend.query("SELECT count(*) FROM consumer_rejects") == [(0,)]


def test_opening_an_existing_database_keeps_its_rows(backend: Backend, db: ReadingsDB) -> None:
    db.store_batch([env(1), env(2)], Counter({"bad_json": 1}))
    again = backend.open()
    try:
        assert again.store_batch([env(2), env(3)], Counter()) == (1, 1)
    finally:
        again.close()
    assert [row[4] for row in identities(backend)] == [1, 2, 3]
    assert counters(backend) == (3, 3, 1, 0)
    assert rejects(backend) == {"bad_json": 1}


# -- dedup and counters ----------------------------------------------------
def test_a_duplicate_identity_is_stored_once_and_counted(backend: Backend, db: ReadingsDB
                                                         ) -> None:
    assert db.store_batch([env(1), env(2), env(2)], Counter()) == (2, 1)  # same batch
    assert db.store_batch([env(2), env(3), env(1)], Counter()) == (1, 2)  # across batches
    assert [row[4] for row in identities(backend)] == [1, 2, 3]
    assert counters(backend) == (3, 3, 3, 0)

    # A different gateway, epoch, device or stream makes a different identity.
    others = [env(1, gateway="gw-2"), env(1, epoch="E2"), env(1, device="meter"),
              env(1, stream="alarm")]
    assert db.store_batch(others, Counter()) == (4, 0)
    assert len(identities(backend)) == 7
    assert db.store_batch(others, Counter()) == (0, 4)
    assert len(identities(backend)) == 7
    assert backend.query("SELECT count(*), sum(received), sum(duplicates) FROM stream_counters") \
        == [(5, 7, 7)]


def test_a_duplicate_keeps_the_first_copy(backend: Backend, db: ReadingsDB) -> None:
    db.store_batch([env(1, value=1)], Counter())
    db.store_batch([env(1, value=2)], Counter())
    assert backend.query("SELECT CAST(value AS TEXT) FROM readings") == [("1",)]


def test_counters_count_received_duplicates_and_gaps(backend: Backend, db: ReadingsDB) -> None:
    assert db.store_batch([env(s) for s in (1, 2, 4, 4, 5)], Counter()) == (4, 1)
    assert counters(backend) == (5, 4, 1, 1)  # max_seq, received, duplicates, gaps
    assert db.store_batch([env(3)], Counter()) == (1, 0)
    assert counters(backend) == (5, 5, 1, 0)
    assert db.store_batch([env(3), env(8)], Counter()) == (1, 1)
    assert counters(backend) == (8, 6, 2, 2)


def test_counters_over_batches_out_of_order_and_per_stream(backend: Backend, db: ReadingsDB
                                                           ) -> None:
    db.store_batch([env(5), env(1, stream="alarm")], Counter())
    assert counters(backend) == (5, 1, 0, 0), "first contact at seq 5 is not 4 gaps"
    assert counters(backend, "alarm") == (1, 1, 0, 0)
    db.store_batch([env(2), env(1), env(3, stream="alarm")], Counter())
    assert counters(backend) == (5, 3, 0, 0), "seqs below first contact fill in"
    assert counters(backend, "alarm") == (3, 2, 0, 1)
    db.store_batch([env(4), env(3), env(5), env(2, stream="alarm")], Counter())
    assert counters(backend) == (5, 5, 1, 0)
    assert counters(backend, "alarm") == (3, 3, 0, 0)


def test_first_contact_is_kept_and_gaps_count_from_it(backend: Backend, db: ReadingsDB) -> None:
    db.store_batch([env(198), env(196)], Counter())
    db.store_batch([env(201), env(10)], Counter())
    [(first, before, gaps)] = backend.query(
        "SELECT first_seq, before_first, gaps FROM stream_counters")
    assert (first, before, gaps) == (196, 1, 3)  # 197, 199 and 200 are missing; 10 is history
    assert counters(backend) == (201, 4, 0, 3)


OLD_COUNTERS = ("CREATE TABLE stream_counters (gateway TEXT NOT NULL, epoch TEXT NOT NULL, "
                "device TEXT NOT NULL, stream TEXT NOT NULL, max_seq BIGINT NOT NULL, "
                "received BIGINT NOT NULL, duplicates BIGINT NOT NULL, gaps BIGINT NOT NULL, "
                "PRIMARY KEY (gateway, epoch, device, stream))")


def test_counters_of_an_older_database_keep_counting_from_seq_1(backend: Backend) -> None:
    old_row = "INSERT INTO stream_counters VALUES ('gw-1', 'E1', 'climate', 'temperature', 5, 3, 0, 2)"
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.database)) as conn:
            conn.execute(OLD_COUNTERS)
            conn.execute(old_row)
            conn.commit()
    else:
        with psycopg.connect(backend.database, autocommit=True) as conn:
            conn.execute(OLD_COUNTERS)
            conn.execute(old_row)
    database = backend.open()
    try:
        database.store_batch([env(7)], Counter())
    finally:
        database.close()
    [(first, gaps)] = backend.query("SELECT first_seq, gaps FROM stream_counters")
    assert (first, gaps) == (1, 3)  # 7 seqs from 1, 4 received
    assert counters(backend) == (7, 4, 0, 3)


OLD_READINGS = ("CREATE TABLE readings (gateway TEXT NOT NULL, epoch TEXT NOT NULL, "
                "device TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL, ts {ts} NOT NULL, "
                "value TEXT NOT NULL, unit TEXT, received_at {ts} NOT NULL, "
                "PRIMARY KEY (gateway, epoch, device, stream, seq))")


def test_readings_of_an_older_database_gain_ts_quality_and_keep_their_rows(backend: Backend
                                                                          ) -> None:
    old_row = ("INSERT INTO readings VALUES ('gw-1', 'E1', 'climate', 'temperature', 1, "
               "'2026-11-26T21:00:00.000Z', '21.5', NULL, '2026-11-26T21:00:01.000Z')")
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.database)) as conn:
            conn.execute(OLD_READINGS.format(ts="TEXT"))
            conn.execute(old_row)
            conn.commit()
    else:
        with psycopg.connect(backend.database, autocommit=True) as conn:
            conn.execute(OLD_READINGS.format(ts="TIMESTAMPTZ"))
            conn.execute(old_row)
    database = backend.open()
    try:
        assert database.store_batch([env(2, ts_quality="unsynced")], Counter()) == (1, 0)
    finally:
        database.close()
    assert backend.query("SELECT seq, ts_quality FROM readings ORDER BY seq") == [
        (1, None), (2, "unsynced")]


def test_ts_quality_is_stored_and_absent_is_null(backend: Backend, db: ReadingsDB) -> None:
    db.store_batch([env(1), env(2, ts_quality="unsynced")], Counter())
    assert backend.query("SELECT seq, ts_quality FROM readings ORDER BY seq") == [
        (1, None), (2, "unsynced")]


def test_rejects_accumulate(backend: Backend, db: ReadingsDB) -> None:
    db.store_batch([], Counter({"bad_json": 2, "unknown_version": 1}))
    db.store_batch([env(1)], Counter({"bad_json": 3, "bad_field": 1}))
    assert rejects(backend) == {"bad_json": 5, "unknown_version": 1, "bad_field": 1}
    assert db.store_batch([], Counter()) == (0, 0)
    assert rejects(backend) == {"bad_json": 5, "unknown_version": 1, "bad_field": 1}


# -- what is stored --------------------------------------------------------
@pytest.mark.parametrize("value", [
    21.5, 0, -7, True, None, "on", "°C ünïcode", "",
    {"a": [1, 2.5, None, {"b": "x"}], "ok": False, "t": "°"}, [1, "two", [3]],
])
def test_value_is_stored_as_json_text_that_round_trips(backend: Backend, db: ReadingsDB,
                                                       value: Any) -> None:
    """JSON text in SQLite, jsonb in PostgreSQL: as text, either reads back as the value."""
    db.store_batch([env(1, value=value)], Counter())
    [(text,)] = backend.query("SELECT CAST(value AS TEXT) FROM readings")
    assert isinstance(text, str)
    assert json.loads(text) == value
    assert type(json.loads(text)) is type(value)


def test_every_field_is_stored(backend: Backend, db: ReadingsDB) -> None:
    db.store_batch([env(7, ts=T0, unit="°C"), env(8, ts=T0 + 0.5, unit=None)], Counter())
    rows = backend.query(f"SELECT {', '.join(READINGS_COLUMNS)} FROM readings ORDER BY seq")
    assert [row[:5] for row in rows] == [("gw-1", "E1", "climate", "temperature", 7),
                                         ("gw-1", "E1", "climate", "temperature", 8)]
    assert [as_utc(row[5]) for row in rows] == ["2023-11-14T22:13:20.125Z",
                                                "2023-11-14T22:13:20.625Z"]
    assert [row[7] for row in rows] == ["°C", None]
    received = [datetime.fromisoformat(as_utc(row[8]).replace("Z", "+00:00")) for row in rows]
    assert all(abs((r - datetime.now(UTC)).total_seconds()) < 600 for r in received)


def test_a_failing_batch_rolls_back_entirely(backend: Backend, db: ReadingsDB) -> None:
    db.store_batch([env(1), env(2)], Counter({"bad_json": 1}))
    before = (identities(backend), backend.query("SELECT * FROM stream_counters"), rejects(backend))
    # The last reading cannot be stored (its seq does not fit a 64-bit column; first contact
    # of its stream, so no seq bound applies).
    failing = [env(3), env(2), env(1, stream="alarm"), env(2**63, stream="other", ts=T0)]
    with pytest.raises((OverflowError, psycopg.Error)):  # each driver says it its own way
        db.store_batch(failing, Counter({"bad_json": 1, "unknown_version": 1}))
    assert (identities(backend), backend.query("SELECT * FROM stream_counters"),
            rejects(backend)) == before
    # The connection is usable again and the batch can be retried without its bad reading.
    assert db.store_batch(failing[:3], Counter({"bad_json": 1})) == (2, 1)
    assert [row[3:] for row in identities(backend)] == [
        ("alarm", 1), ("temperature", 1), ("temperature", 2), ("temperature", 3)]
    assert rejects(backend) == {"bad_json": 2}


@pytest.mark.parametrize("poison", [
    pytest.param({"value": "\ud800"}, id="lone-surrogate-in-value"),
    pytest.param({"value": {"k\udfff": 1}}, id="lone-surrogate-in-a-key"),
    pytest.param({"unit": "\udc80"}, id="lone-surrogate-in-unit"),
    pytest.param({"device": "cli\ud83dmate"}, id="lone-surrogate-in-device"),
    pytest.param({"unit": "a\x00b"}, id="nul-in-unit"),
    pytest.param({"stream": "temp\x00"}, id="nul-in-stream"),
])
def test_a_reading_that_cannot_be_stored_is_counted_and_does_not_block_its_batch(
        backend: Backend, db: ReadingsDB, poison: dict[str, Any]) -> None:
    """`decode` accepts JSON such as "\\ud800" or "\\u0000" in any string.

    If storing such a reading failed the batch, the consumer would retry the
    batch forever and acknowledge nothing after it (docs/guarantees.md, "Rejected messages").
    """
    batch_rejects: Counter[str] = Counter({"bad_json": 1})
    fresh, duplicates = db.store_batch([env(1), env(2, **poison), env(3)], batch_rejects)
    assert (fresh, duplicates) == (2, 0)
    assert [row[4] for row in identities(backend)] == [1, 3]
    assert rejects(backend) == {"bad_json": 1, "bad_field": 1}
    assert batch_rejects == Counter({"bad_json": 1, "bad_field": 1})  # the caller counts it too


def test_nul_inside_a_value_string_is_stored_escaped(backend: Backend, db: ReadingsDB) -> None:
    """SQLite keeps the JSON escape; PostgreSQL's jsonb cannot hold a NUL at all, so there
    the reading is skipped and counted as bad_field while the rest of its batch is stored."""
    rejects: Counter[str] = Counter()
    skipped: list[tuple[str, Envelope]] = []
    stored = db.store_batch([env(1, value="a\x00b"), env(2, value="a\\u0000"),
                             env(3, value=["x", {"k": "\x00"}])], rejects, (), skipped)
    texts = [text for (text,) in backend.query(
        "SELECT CAST(value AS TEXT) FROM readings ORDER BY seq")]
    if backend.name == "sqlite":
        assert stored == (3, 0) and rejects == Counter() and skipped == []
        assert all("\x00" not in text for text in texts)
        assert [json.loads(text) for text in texts] == ["a\x00b", "a\\u0000", ["x", {"k": "\x00"}]]
    else:
        assert stored == (1, 0)
        assert [json.loads(text) for text in texts] == ["a\\u0000"]
        assert rejects == Counter({"bad_field": 2})
        assert [(reason, e.seq) for reason, e in skipped] == [("bad_field", 1), ("bad_field", 3)]


# -- gateways (the latest `_status` of each gateway) ---------------------------------
def test_gateways_keeps_the_latest_status_of_each_gateway(backend: Backend, db: ReadingsDB
                                                           ) -> None:
    from gateway.cloud.status import read_consumer_status, render_consumer_status  # noqa: PLC0415
    from gateway.config.common import BrokerAddress, BrokerEndpoints  # noqa: PLC0415
    from gateway.config.consumer_config import ConsumerConfig  # noqa: PLC0415
    from gateway.core.presence import GatewayStatus  # noqa: PLC0415

    db.store_statuses([GatewayStatus("gw-1", "online", "E1", T0, "0.3.0", {"d": "up"}),
                       GatewayStatus("gw-2", "online", "E9", T0, "0.3.0", {})])
    db.store_statuses([GatewayStatus("gw-1", "offline", "E1", T0, "0.3.0", {"d": "down"},
                                     "connection lost")])
    rows = backend.query("SELECT gateway, state, epoch, since, version, devices, reason, "
                         "updated_at FROM gateways ORDER BY gateway")
    assert [r[:3] + r[4:7] for r in rows] == [
        ("gw-1", "offline", "E1", "0.3.0", '{"d": "down"}', "connection lost"),
        ("gw-2", "online", "E9", "0.3.0", "{}", None)]
    assert as_utc(rows[0][3]) == format_ts(T0)
    config = ConsumerConfig(Path("c.yaml"), BrokerEndpoints((BrokerAddress("h", 1883, False),)),
                            "c1", "gw/#", 30, 60, backend.database, 0.1, 10, 10.0)
    report = read_consumer_status(config)
    assert [g["state"] for g in report["presence"]] == ["offline", "online"]
    text = render_consumer_status(report)
    assert "gw-1" in text and "OFFLINE (connection lost)" in text and "down: d" in text, text
