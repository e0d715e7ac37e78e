"""The consumer's database against hostile and broken readings, on real SQLite files and a
real PostgreSQL server (the fixtures of test_consumer_db): rows the database refuses are
isolated from their batch, seq jumps are refused, the gap total cannot overflow."""

from __future__ import annotations

import secrets
import sqlite3
from collections import Counter
from contextlib import closing

import psycopg
import pytest

from gateway.cloud.admission import Refusal
from gateway.cloud.database import ReadingsDB, read_gaps
from gateway.cloud.isolation import store_isolating
from tests.adapters import test_consumer_db as base
from tests.adapters.test_consumer_db import T0, Backend, counters, env, identities, rejects

backend = base.backend  # the fixtures: every test runs on SQLite and on PostgreSQL
db = base.db

TOPIC = "gw/gw-1/climate/temperature"


def refuse_device(backend: Backend, device: str) -> None:
    """Make the database itself refuse readings of `device` (a constraint of its own)."""
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.database)) as conn:
            conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.device = "
                         f"'{device}' BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END")
            conn.commit()
    else:
        with psycopg.connect(backend.database, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE readings ADD CONSTRAINT refuse CHECK (device <> '{device}')")


def rejected(backend: Backend) -> list[tuple[str, str, str]]:
    return [(str(t), str(r), str(p)) for t, r, p in backend.query(
        "SELECT topic, reason, payload FROM rejected_payloads ORDER BY reason, topic")]


# -- a row the database refuses -------------------------------------------------
def test_a_refused_row_is_isolated_and_the_rest_of_its_batch_is_stored(
        backend: Backend, db: ReadingsDB) -> None:
    refuse_device(backend, "poison")
    batch = [env(s) for s in range(1, 11)] + [env(1, device="poison")] + \
        [env(s, gateway="gw-2") for s in range(1, 6)]
    stored = store_isolating(db, batch, Counter({"bad_json": 1}), [], lambda e: TOPIC)
    assert (stored.fresh, stored.duplicates) == (15, 0)
    assert [e.device for _, e in stored.skipped] == ["poison"]
    assert len(identities(backend)) == 15
    assert rejects(backend) == {"bad_json": 1, "database_refused": 1}, "counted once each"
    [(topic, reason, payload)] = rejected(backend)
    assert (topic, reason) == (TOPIC, "database_refused")
    assert '"device": "poison"' in payload


def test_a_device_too_long_for_the_postgresql_index_is_isolated(backend: Backend,
                                                                db: ReadingsDB) -> None:
    """The probe's poison: 8,000 characters in a key column exceed PostgreSQL's btree row
    limit (SQLite stores it); either way the rest of the batch is stored."""
    poison = env(1, device=secrets.token_urlsafe(6000)[:8000])  # incompressible
    batch = [env(1), poison, env(2)]
    stored = store_isolating(db, batch, Counter(), [], lambda e: TOPIC)
    if backend.name == "postgresql":
        assert (stored.fresh, len(stored.refused)) == (2, 1)
        assert "54000" in stored.refused[0][1]
        [(_, reason, payload)] = rejected(backend)
        assert reason == "database_refused" and len(payload) <= 512, "the excerpt is bounded"
    else:
        assert (stored.fresh, stored.refused) == (3, [])


def test_an_outage_is_raised_not_bisected(backend: Backend, db: ReadingsDB) -> None:
    """A database that is down refuses every row: that is not a reason to bisect."""
    if backend.name == "sqlite":
        # Another writer holds the lock past the consumer's busy timeout (5 s).
        with closing(sqlite3.connect(backend.database, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                store_isolating(db, [env(1), env(2)], Counter(), [], lambda e: TOPIC)
            other.execute("ROLLBACK")
    else:
        # The consumer's own connection is cut, as a server restart would (SQLSTATE 57P01).
        pid = db._conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(backend.database, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            store_isolating(db, [env(1), env(2)], Counter(), [], lambda e: TOPIC)
    assert identities(backend) == [] and rejected(backend) == [], "nothing bisected, nothing kept"
    assert db.store_batch([env(1), env(2)], Counter()) == (2, 0), "the retry works"


def test_refused_payloads_are_kept_with_the_batch(backend: Backend, db: ReadingsDB) -> None:
    refused = [Refusal(TOPIC, "topic_mismatch", "the topic names gateway=a", "{\\u0000"),
               Refusal("gw/x/y/z", "too_large", "300000 bytes", "x" * 128)]
    assert db.store_batch([env(1)], Counter({"topic_mismatch": 1, "too_large": 1}), refused) \
        == (1, 0)
    assert [(t, r) for t, r, _ in rejected(backend)] == [("gw/x/y/z", "too_large"),
                                                          (TOPIC, "topic_mismatch")]


# -- seq jumps and the gap total ------------------------------------------------
def test_a_seq_jump_is_refused_and_counted(backend: Backend, db: ReadingsDB) -> None:
    skipped: list[tuple[str, object]] = []
    assert db.store_batch([env(1), env(2)], Counter()) == (2, 0)
    assert db.store_batch([env(2**63 - 1, ts=T0), env(3), env(1_000_002)], Counter(), (), skipped) \
        == (2, 0)
    assert [(reason, e.seq) for reason, e in skipped] == [("seq_jump", 2**63 - 1)]  # type: ignore[attr-defined]
    assert rejects(backend) == {"seq_jump": 1}
    assert counters(backend) == (1_000_002, 4, 0, 999_998)


def test_first_contact_has_no_seq_bound(backend: Backend, db: ReadingsDB) -> None:
    assert db.store_batch([env(2**63 - 1, ts=T0)], Counter()) == (1, 0)
    assert counters(backend) == (2**63 - 1, 1, 0, 0)
    # In a first batch the lowest seq is the start: the far one is the jump.
    assert db.store_batch([env(2**62, stream="b", ts=T0), env(5, stream="b")], Counter()) == (1, 0)
    assert counters(backend, "b") == (5, 1, 0, 0)
    assert rejects(backend) == {"seq_jump": 1}


def test_a_stream_that_goes_on_after_a_jump_is_stored_again(backend: Backend,
                                                            db: ReadingsDB) -> None:
    """More than max_seq_jump at-most-once readings lost: the first after them is refused,
    the stream goes on from the next, and the lost ones are gaps."""
    assert db.store_batch([env(1), env(2)], Counter()) == (2, 0)
    assert db.store_batch([env(1_500_000)], Counter()) == (0, 0)
    assert db.store_batch([env(1_500_000)], Counter()) == (0, 0), "a redelivered copy"
    assert db.store_batch([env(1_500_001), env(1_500_002)], Counter()) == (2, 0)
    assert db.store_batch([env(1_500_003)], Counter()) == (1, 0)
    assert rejects(backend) == {"seq_jump": 2}
    assert counters(backend) == (1_500_003, 5, 0, 1_499_998)
    assert backend.query("SELECT jump_seq FROM stream_counters") == [(None,)]


def test_the_gap_total_does_not_overflow(backend: Backend, db: ReadingsDB) -> None:
    db.store_batch([env(1, stream=s) for s in "abc"], Counter())
    huge = 2**62
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.database)) as conn:
            conn.execute("UPDATE stream_counters SET gaps = ?", (huge,))
            conn.commit()
    else:
        with psycopg.connect(backend.database, autocommit=True) as conn:
            conn.execute("UPDATE stream_counters SET gaps = %s", (huge,))
    assert read_gaps(backend.database) == pytest.approx(3 * huge, rel=1e-9)
