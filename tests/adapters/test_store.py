"""The SQLite outbox on real files: epochs, identities, group commit, size cap, faults.

No mocks: every test opens real SQLite files in tmp_path. Crashes are a
dropped connection, a SIGKILLed process, or (for a power cut that rolls back
the last transactions of a WAL database) a copy of the database files taken
while the gateway ran.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from devices.registry import DRIVERS
from gateway.config.gateway_config import GatewayConfig, load_gateway_config
from gateway.core.envelope import Envelope, decode
from gateway.edge.status import StatusError, read_status
from gateway.store.outbox import NewReading, Outbox, OutboxRow
from gateway.store.schema import DropKey
from gateway.store.sql import StoreError

GW = "gw-test"
TEMP = ("climate", "temperature")
ALARM = ("climate", "alarm")
PULSES = ("meter", "pulses")
BIG = 1 << 40  # a size cap that is never reached
T0 = 1_700_000_000.0
Identity = tuple[str, str, str, str, int]  # (gateway, epoch, device, stream, seq)


def reading(key: tuple[str, str] = TEMP, *, qos: int = 1, ts: float = T0, value: Any = 21.5,
            unit: str | None = "°C") -> NewReading:
    device, stream = key
    return NewReading(device, stream, qos, ts, value, unit, f"gw/{GW}/{device}/{stream}")


def open_outbox(path: Path, *, durability: str = "normal", max_bytes: int = BIG) -> Outbox:
    return Outbox.open(path, GW, durability=durability, max_bytes=max_bytes)


def store(outbox: Outbox, readings: list[NewReading]) -> None:
    result = outbox.commit(readings, [], [], Counter())
    assert (result.stored, result.refused) == (len(readings), 0)


def envelope(row: OutboxRow) -> Envelope:
    env = decode(row.payload)
    assert isinstance(env, Envelope), env
    return env


def identity(row: OutboxRow) -> Identity:
    env = envelope(row)
    return (env.gateway, env.epoch, env.device, env.stream, env.seq)


def all_rows(outbox: Outbox) -> list[OutboxRow]:
    return outbox.fetch(0, 1_000_000)


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Committed state, seen through a connection of its own."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def meta(path: Path) -> dict[str, str]:
    return dict(query(path, "SELECT key, value FROM meta"))


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table that a commit writes, as committed."""
    return {
        table: query(path, f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        for table in ("outbox", "quarantine", "drops", "sequences")
    }


def seqs_by_stream(rows: list[OutboxRow]) -> dict[tuple[str, str], list[int]]:
    seqs: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        env = envelope(row)
        seqs.setdefault((env.device, env.stream), []).append(env.seq)
    return seqs


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.sqlite"


@pytest.fixture
def outbox(db: Path) -> Iterator[Outbox]:
    box = open_outbox(db)
    yield box
    box._conn.close()  # idempotent; a test may already have closed it


# -- epochs ----------------------------------------------------------------
def test_a_fresh_store_starts_an_epoch_and_a_clean_stop_continues_it(db: Path) -> None:
    first = open_outbox(db)
    assert not first.continued
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", first.epoch)
    assert meta(db)["clean_stop"] == "0"  # marked running before any seq is handed out
    store(first, [reading(TEMP), reading(TEMP), reading(ALARM, qos=2), reading(TEMP)])
    first.close(clean=True)
    assert meta(db)["clean_stop"] == "1"

    second = open_outbox(db)
    assert second.continued
    assert second.epoch == first.epoch
    assert meta(db)["clean_stop"] == "0"
    store(second, [reading(ALARM, qos=2), reading(TEMP), reading(PULSES, qos=2)])
    second.close(clean=True)

    third = open_outbox(db)
    try:
        assert third.continued and third.epoch == first.epoch
        rows = all_rows(third)
        assert {envelope(r).epoch for r in rows} == {first.epoch}
        assert seqs_by_stream(rows) == {TEMP: [1, 2, 3, 4], ALARM: [1, 2], PULSES: [1]}
        assert len(set(map(identity, rows))) == len(rows)
        store(third, [reading(TEMP)])
        assert envelope(all_rows(third)[-1]).seq == 5  # next seq = last + 1
    finally:
        third.close(clean=True)


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from collections import Counter
    from pathlib import Path
    from gateway.store.outbox import NewReading, Outbox
    box = Outbox.open(Path(sys.argv[1]), sys.argv[2], durability="normal", max_bytes=1 << 40)
    r = NewReading("climate", "temperature", 1, 1700000000.0, 1, None, "t")
    box.commit([r, r], [], [], Counter())
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("stop", ["close-unclean", "dropped-connection", "sigkill"])
def test_after_an_unclean_stop_a_new_epoch_starts_and_old_rows_stay(db: Path, stop: str) -> None:
    clean_run = open_outbox(db)
    store(clean_run, [reading(TEMP), reading(TEMP)])
    clean_run.close(clean=True)  # so a continued epoch would be possible if the next stop were clean

    if stop == "sigkill":
        proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(db), GW],
                              capture_output=True, timeout=60, check=False)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    else:
        crashed = open_outbox(db)
        assert crashed.continued
        store(crashed, [reading(TEMP), reading(TEMP)])
        if stop == "close-unclean":
            crashed.close(clean=False)
        else:
            crashed._conn.close()
    before = query(db, "SELECT id, epoch, device, stream, seq, payload FROM outbox ORDER BY id")
    assert [(row[1], row[4]) for row in before][-2:] == [(before[0][1], 3), (before[0][1], 4)]
    old_epoch = before[0][1]

    after = open_outbox(db)
    try:
        assert not after.continued
        assert after.epoch != old_epoch
        store(after, [reading(TEMP), reading(ALARM, qos=2), reading(TEMP)])
        rows = all_rows(after)
        # The old epoch's rows are still there, with their old identity in the payload.
        old = rows[: len(before)]
        assert [(r.id, envelope(r).epoch, envelope(r).seq) for r in old] == [
            (row[0], old_epoch, row[4]) for row in before]
        assert [r.payload for r in old] == [row[5] for row in before]
        # Seqs restart at 1 in the new epoch.
        new = rows[len(before):]
        assert {envelope(r).epoch for r in new} == {after.epoch}
        assert seqs_by_stream(new) == {TEMP: [1, 2], ALARM: [1]}
    finally:
        after.close(clean=True)


def test_a_power_cut_that_rolls_back_transactions_never_reuses_an_identity(
        db: Path, tmp_path: Path) -> None:
    first = open_outbox(db)
    store(first, [reading(TEMP), reading(ALARM, qos=2)])
    first.close(clean=True)

    running = open_outbox(db, durability="normal")
    assert running.continued
    store(running, [reading(TEMP), reading(ALARM, qos=2), reading(PULSES, qos=2)])
    # The disk as a power cut would leave it: everything after this point rolled back.
    copy = tmp_path / "after-power-cut" / "outbox.sqlite"
    copy.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{db}{suffix}")
        if source.exists():
            shutil.copyfile(source, f"{copy}{suffix}")
    copy_point = max(r.id for r in all_rows(running))
    later = [reading(key, qos=2 if key != TEMP else 1) for key in (TEMP, ALARM, PULSES) * 5]
    for i in range(0, len(later), 3):
        store(running, later[i:i + 3])
    handed_out_after_copy = {identity(r) for r in running.fetch(copy_point, 1000)}
    assert len(handed_out_after_copy) == len(later)
    running.close(clean=True)

    restarted = open_outbox(copy)
    try:
        assert not restarted.continued
        assert restarted.epoch != running.epoch
        # What was stored before the copy point survived, as it was.
        survived = [(r.id, r.payload) for r in all_rows(restarted)]
        assert survived == query(db, "SELECT id, payload FROM outbox WHERE id <= ? ORDER BY id",
                                 (copy_point,))
        assert max(row_id for row_id, _ in survived) == copy_point
        for i in range(0, len(later), 3):
            store(restarted, later[i:i + 3])
        handed_out_by_copy = {identity(r) for r in restarted.fetch(copy_point, 1000)}
        assert len(handed_out_by_copy) == len(later)
        assert handed_out_after_copy & handed_out_by_copy == set()
    finally:
        restarted.close(clean=True)


# -- the group commit ------------------------------------------------------
def test_one_commit_of_1000_readings_is_one_transaction_with_right_payloads(
        outbox: Outbox) -> None:
    keys = [TEMP, ALARM, PULSES, TEMP]  # temperature twice as often
    readings = [
        reading(keys[i % 4], qos=1 if keys[i % 4] == TEMP else 2, ts=T0 + i * 0.125,
                value={"i": i, "ok": i % 2 == 0} if keys[i % 4] == PULSES else i + 0.5,
                unit=None if keys[i % 4] == ALARM else "°C")
        for i in range(1000)
    ]
    statements: list[str] = []
    outbox._conn.set_trace_callback(statements.append)
    result = outbox.commit(readings, [], [], Counter())
    outbox._conn.set_trace_callback(None)

    assert (result.stored, result.refused, result.deleted) == (1000, 0, 0)
    assert [s for s in statements if s.split()[0].upper() in {"BEGIN", "COMMIT", "ROLLBACK"}] == [
        "BEGIN IMMEDIATE", "COMMIT"]
    rows = all_rows(outbox)
    assert len(rows) == 1000
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert seqs_by_stream(rows) == {TEMP: list(range(1, 501)), ALARM: list(range(1, 251)),
                                    PULSES: list(range(1, 251))}
    for r, row in zip(readings, rows, strict=True):
        env = envelope(row)
        assert (env.gateway, env.epoch, env.device, env.stream) == (
            GW, outbox.epoch, r.device, r.stream)
        assert (env.ts, env.value, env.unit) == (r.ts, r.value, r.unit)
        assert (row.qos, row.topic) == (r.qos, r.topic)
    assert query(outbox.path, "SELECT device, stream, last_seq FROM sequences WHERE epoch = ? "
                 "ORDER BY device, stream", (outbox.epoch,)) == [
        ("climate", "alarm", 250), ("climate", "temperature", 500), ("meter", "pulses", 250)]


def test_acks_delete_quarantine_moves_and_drops_accumulate(outbox: Outbox) -> None:
    store(outbox, [reading(TEMP) for _ in range(4)] + [reading(ALARM, qos=2) for _ in range(2)])
    ids = [r.id for r in all_rows(outbox)]
    payloads = {r.id: r.payload for r in all_rows(outbox)}
    drops: Counter[DropKey] = Counter({("at_most_once_buffer_full", "climate", "humidity"): 2,
                                       ("line_too_long", "climate", "temperature"): 1})
    result = outbox.commit([], [ids[0], ids[1]], [(ids[4], "topic rejected (0x90)")], drops)
    assert result.deleted == 3

    assert [r.id for r in all_rows(outbox)] == [ids[2], ids[3], ids[5]]
    assert outbox.pending_count() == 3
    assert query(outbox.path, "SELECT id, epoch, device, stream, seq, qos, payload, reason "
                 "FROM quarantine") == [
        (ids[4], outbox.epoch, "climate", "alarm", 1, 2, payloads[ids[4]], "topic rejected (0x90)")]

    outbox.commit([], [ids[5]], [(ids[2], "packet too large")],
                  Counter({("at_most_once_buffer_full", "climate", "humidity"): 3}))
    assert [r.id for r in all_rows(outbox)] == [ids[3]]
    assert query(outbox.path, "SELECT id, reason FROM quarantine ORDER BY id") == [
        (ids[2], "packet too large"), (ids[4], "topic rejected (0x90)")]
    assert query(outbox.path, "SELECT reason, device, stream, count FROM drops ORDER BY reason") == [
        ("at_most_once_buffer_full", "climate", "humidity", 5),
        ("line_too_long", "climate", "temperature", 1)]
    # Acknowledging a row that is already gone changes nothing.
    assert outbox.commit([], [ids[0]], [], Counter()).deleted == 1
    assert [r.id for r in all_rows(outbox)] == [ids[3]]


def test_a_full_store_refuses_new_readings_keeps_stored_ones_and_resumes_after_acks(
        db: Path) -> None:
    cap = 64 * 1024
    box = open_outbox(db, max_bytes=cap)
    try:
        batch = [reading(TEMP, value="x" * 200), reading(ALARM, qos=2, value="y" * 200)] * 10
        for _ in range(200):
            result = box.commit(batch, [], [], Counter())
            if result.refused:
                break
            assert result.stored == len(batch)
        else:
            pytest.fail(f"a {cap}-byte store took {200 * len(batch)} readings without refusing")
        assert (result.stored, result.refused) == (0, len(batch))
        assert box.bytes_used >= cap
        stored = all_rows(box)
        assert stored, "the store refused readings before storing any"
        last = {key: seqs[-1] for key, seqs in seqs_by_stream(stored).items()}

        assert box.commit(batch, [], [], Counter()).refused == len(batch)
        assert all_rows(box) == stored  # nothing evicted to make room
        assert query(db, "SELECT reason, device, stream, count FROM drops ORDER BY stream") == [
            ("store_full", "climate", "alarm", 20), ("store_full", "climate", "temperature", 20)]

        # Acknowledgements are still applied while full, and free the space.
        result = box.commit(batch, [r.id for r in stored], [], Counter())
        assert (result.stored, result.refused, result.deleted) == (0, len(batch), len(stored))
        assert box.pending_count() == 0
        assert box.bytes_used < cap
        result = box.commit(batch, [], [], Counter())
        assert (result.stored, result.refused) == (len(batch), 0)
        # Refused readings were given no seq: the stream goes on from the last stored one.
        assert {key: seqs[0] for key, seqs in seqs_by_stream(all_rows(box)).items()} == {
            key: seq + 1 for key, seq in last.items()}
        assert query(db, "SELECT sum(count) FROM drops WHERE reason = 'store_full'") == [(60,)]
    finally:
        box.close(clean=True)


def test_fetch_is_in_id_order_and_never_skips_a_row_added_after_the_table_emptied(
        db: Path) -> None:
    box = open_outbox(db)
    store(box, [reading(TEMP), reading(ALARM, qos=2), reading(TEMP), reading(PULSES, qos=2),
                reading(TEMP)])
    first = box.fetch(0, 2)
    assert len(first) == 2
    rest = box.fetch(first[-1].id, 100)
    assert [r.id for r in first + rest] == [r.id for r in all_rows(box)]
    assert len(rest) == 3
    assert [r.id for r in first + rest] == sorted({r.id for r in first + rest})
    assert box.fetch(rest[-1].id, 100) == []
    assert box.fetch_ids([rest[0].id, first[0].id, 10**9]) == [first[0], rest[0]]

    cursor = rest[-1].id  # the publisher's "rows after id N"
    box.commit([], [r.id for r in first + rest], [], Counter())
    assert box.pending_count() == 0
    store(box, [reading(TEMP)])
    assert [identity(r)[3:] for r in box.fetch(cursor, 100)] == [("temperature", 4)]
    cursor = box.fetch(cursor, 100)[-1].id
    box.commit([], [cursor], [], Counter())
    box.close(clean=True)

    # Across a restart too.
    box = open_outbox(db)
    try:
        assert box.pending_count() == 0
        store(box, [reading(ALARM, qos=2)])
        assert [identity(r)[3:] for r in box.fetch(cursor, 100)] == [("alarm", 2)]
    finally:
        box.close(clean=True)


# -- faults ----------------------------------------------------------------
def test_a_commit_blocked_by_another_writer_raises_and_changes_nothing(outbox: Outbox) -> None:
    store(outbox, [reading(TEMP), reading(ALARM, qos=2)])
    ids = [r.id for r in all_rows(outbox)]
    before = snapshot(outbox.path)
    outbox._conn.execute("PRAGMA busy_timeout=50")
    with closing(sqlite3.connect(outbox.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            outbox.commit([reading(TEMP)], [ids[0]], [(ids[1], "rejected")],
                          Counter({("bad_line", "climate", "temperature"): 1}))
        other.execute("ROLLBACK")
    assert not outbox._conn.in_transaction
    assert snapshot(outbox.path) == before
    # The store works again once the other writer is gone.
    assert outbox.commit([reading(TEMP)], [ids[0]], [], Counter()).stored == 1
    assert seqs_by_stream(all_rows(outbox)) == {ALARM: [1], TEMP: [2]}


def _inject(path: Path, sql: str) -> None:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.executescript(sql)


@pytest.mark.parametrize("where", ["mid-transaction", "at-commit"])
def test_a_commit_that_fails_inside_its_transaction_leaves_no_partial_batch(
        outbox: Outbox, where: str) -> None:
    store(outbox, [reading(TEMP), reading(ALARM, qos=2), reading(TEMP)])
    ids = [r.id for r in all_rows(outbox)]
    before_identities = {identity(r) for r in all_rows(outbox)}
    if where == "mid-transaction":
        # Fails at the last statement of the batch, after the inserts, deletes and quarantine.
        _inject(outbox.path, "CREATE TRIGGER fail BEFORE INSERT ON drops "
                             "BEGIN SELECT RAISE(ABORT, 'injected failure'); END;")
        expected: type[sqlite3.Error] = sqlite3.IntegrityError
    else:
        # A deferred constraint makes COMMIT itself fail, after every statement succeeded.
        _inject(outbox.path, """
            CREATE TABLE parent(id INTEGER PRIMARY KEY);
            CREATE TABLE child(pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
            CREATE TRIGGER fail AFTER INSERT ON drops BEGIN INSERT INTO child VALUES (1); END;""")
        outbox._conn.execute("PRAGMA foreign_keys=ON")
        expected = sqlite3.IntegrityError
    before = snapshot(outbox.path)
    drops: Counter[DropKey] = Counter({("bad_line", "climate", "temperature"): 1})
    with pytest.raises(expected):
        outbox.commit([reading(TEMP), reading(PULSES, qos=2)], [ids[0]], [(ids[1], "rejected")],
                      drops)
    assert not outbox._conn.in_transaction, "a failed commit left its transaction open"
    assert snapshot(outbox.path) == before
    assert [r.id for r in all_rows(outbox)] == ids  # as seen by the outbox's own connection
    assert drops == Counter({("bad_line", "climate", "temperature"): 1})

    _inject(outbox.path, "DROP TRIGGER fail;")
    result = outbox.commit([reading(TEMP)], [ids[0]], [(ids[1], "rejected")], drops)
    assert (result.stored, result.deleted) == (1, 2)
    rows = all_rows(outbox)
    assert len(rows) == 2
    assert identity(rows[-1]) not in before_identities
    assert envelope(rows[-1]).seq > 2


def test_a_failed_commit_of_a_full_store_leaves_the_callers_drop_counts_alone(db: Path) -> None:
    """The caller re-queues the drops of a failed commit and counts its readings as store_error.

    If the failed commit had already added its refused readings to the caller's
    drops as store_full, each of them would be counted twice.
    """
    box = open_outbox(db, max_bytes=0)  # full from the start
    try:
        box._conn.execute("PRAGMA busy_timeout=50")
        drops: Counter[DropKey] = Counter({("bad_line", "climate", "temperature"): 1})
        with closing(sqlite3.connect(db, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError):
                box.commit([reading(TEMP), reading(ALARM, qos=2)], [], [], drops)
            other.execute("ROLLBACK")
        assert drops == Counter({("bad_line", "climate", "temperature"): 1})
        assert query(db, "SELECT count(*) FROM drops") == [(0,)]
        # A commit that goes through counts the refused readings once.
        result = box.commit([reading(TEMP), reading(ALARM, qos=2)], [], [], drops)
        assert (result.stored, result.refused) == (0, 2)
        assert query(db, "SELECT reason, stream, count FROM drops ORDER BY reason, stream") == [
            ("bad_line", "temperature", 1), ("store_full", "alarm", 1),
            ("store_full", "temperature", 1)]
    finally:
        box.close(clean=True)


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_durability_sets_synchronous(db: Path, durability: str, synchronous: int) -> None:
    box = open_outbox(db, durability=durability)
    try:
        assert box._conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        assert box._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store(box, [reading(TEMP)])
        assert box._conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    finally:
        box.close(clean=True)


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_new_store_starts(db: Path) -> None:
    """More in test_store_recovery.py: salvage, counters, a second corrupt file."""
    db.parent.mkdir(parents=True)
    garbage = b"this is not an SQLite database\n" * 200
    db.write_bytes(garbage)
    box = open_outbox(db)
    try:
        store(box, [reading(TEMP)])
        assert not box.continued
        [aside] = db.parent.glob("outbox.sqlite.corrupt-*")
        assert aside.read_bytes() == garbage
        assert meta(db)["store_recovered"] == "1"
    finally:
        box.close(clean=True)


def test_a_store_directory_that_is_a_file_gives_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file, not a directory\n")
    path = tmp_path / "state" / "outbox.sqlite"
    with pytest.raises(StoreError, match=re.escape(str(path))):
        open_outbox(path)


def test_a_store_of_another_schema_version_gives_a_store_error(db: Path) -> None:
    open_outbox(db).close(clean=True)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=re.escape(str(db)) + ".*schema version 99"):
        open_outbox(db)


# -- status ----------------------------------------------------------------
def gateway_config(tmp_path: Path, state_dir: Path) -> GatewayConfig:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        gateway:
          id: {GW}
          state_dir: {state_dir}
        store:
          durability: normal
          max_bytes: 1MiB
        devices:
          - id: climate
            driver: simulator
            streams:
              - name: temperature
                field: temp_c
                unit: "°C"
                delivery: at-least-once
              - name: humidity
                field: humidity_pct
                delivery: at-most-once
              - name: alarm
                field: alarm
                delivery: exactly-once
          - id: meter
            driver: simulator
            streams:
              - name: pulses
                field: counter
                delivery: exactly-once
        """))
    return load_gateway_config(path, DRIVERS)


def test_status_reports_backlog_seqs_drops_and_sizes_beside_the_running_store(
        tmp_path: Path) -> None:
    config = gateway_config(tmp_path, tmp_path / "state")
    box = Outbox.open(config.store_path, config.gateway_id, durability=config.store.durability,
                      max_bytes=config.store.max_bytes)
    try:
        now = T0 + 100
        box.commit([reading(TEMP, ts=T0 + 10), reading(TEMP, ts=T0 + 20), reading(TEMP, ts=T0 + 30),
                    reading(ALARM, qos=2, ts=T0 + 40), reading(ALARM, qos=2, ts=T0 + 50)], [], [],
                   Counter({("at_most_once_buffer_full", "climate", "humidity"): 4,
                            ("line_too_long", "climate", "temperature"): 1}))
        first_temp = all_rows(box)[0].id
        box.commit([reading(PULSES, qos=2, ts=T0 + 60)], [first_temp], [],
                   Counter({("at_most_once_buffer_full", "climate", "humidity"): 2,
                            ("store_full", "meter", "pulses"): 3}))

        report = read_status(config, now=now)  # a connection of its own, beside the writer
        assert report["gateway"] == GW
        assert report["store"] == str(config.store_path)
        assert report["epoch"] == box.epoch
        assert report["running"] is False  # no runtime snapshot written yet
        assert report["backlog"] == {
            "at-most-once": {"pending": 0, "oldest_age_s": None},
            "at-least-once": {"pending": 2, "oldest_age_s": 80.0},
            "exactly-once": {"pending": 3, "oldest_age_s": 60.0},
        }
        assert report["streams"] == [
            {"device": "climate", "stream": "temperature", "delivery": "at-least-once",
             "last_seq": 3, "pending": 2},
            {"device": "climate", "stream": "humidity", "delivery": "at-most-once",
             "last_seq": 0, "pending": 0},
            {"device": "climate", "stream": "alarm", "delivery": "exactly-once",
             "last_seq": 2, "pending": 2},
            {"device": "meter", "stream": "pulses", "delivery": "exactly-once",
             "last_seq": 1, "pending": 1},
        ]
        assert report["drops"] == {"at_most_once_buffer_full": 6, "line_too_long": 1,
                                   "store_full": 3}
        assert report["quarantined"] == 0
        sizes = report["store_bytes"]
        assert sizes["max"] == 1024 * 1024
        assert sizes["live"] == box.bytes_used > 0
        assert sizes["file"] == config.store_path.stat().st_size
        assert sizes["wal"] == Path(f"{config.store_path}-wal").stat().st_size > 0

        box.write_runtime({"pid": os.getpid(), "at_most_once_queued": 7, "updated_at": now,
                           "broker_connected": False, "broker": "mqtt://127.0.0.1:1", "in_flight": 0})
        report = read_status(config, now=now)
        assert report["running"] is True
        assert report["backlog"]["at-most-once"]["pending"] == 7
    finally:
        box.close(clean=True)

    report = read_status(config, now=now)
    assert report["running"] is False
    assert report["last_stop_clean"] is True
    assert report["epoch"] == box.epoch
    assert report["backlog"]["at-least-once"]["pending"] == 2


def test_status_of_a_missing_store_names_it_and_creates_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "never-run"
    config = gateway_config(tmp_path, state_dir)
    with pytest.raises(StatusError, match=re.escape(str(config.store_path))):
        read_status(config)
    assert not state_dir.exists()

    state_dir.mkdir()
    with pytest.raises(StatusError, match=re.escape(str(config.store_path))):
        read_status(config)
    assert list(state_dir.iterdir()) == []


def test_status_of_a_file_that_is_not_a_store_is_a_status_error(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, tmp_path / "state")
    config.store_path.parent.mkdir()
    config.store_path.write_bytes(b"garbage " * 100)
    with pytest.raises(StatusError, match=re.escape(str(config.store_path))):
        read_status(config)


def test_a_version_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1'), ('epoch', 'E-old'), ('clean_stop', '1');
        CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, epoch TEXT NOT NULL,
            device TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL, qos INTEGER NOT NULL,
            ts REAL NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL);
        INSERT INTO outbox(epoch, device, stream, seq, qos, ts, topic, payload)
            VALUES ('E-old', 'dev', 'alo', 7, 1, 0.0, 'gw/x/dev/alo', x'7b7d');
        """
    )
    conn.commit()
    conn.close()
    outbox = Outbox.open(path, "x", durability="normal", max_bytes=1 << 30)
    try:
        [row] = outbox.fetch(0, 10)
        assert (row.stream, row.seq, bool(row.confirm)) == ("alo", 7, False)
        assert outbox.epoch == "E-old"  # the clean stop of the old release still counts
    finally:
        outbox.close(clean=True)
    check = sqlite3.connect(path)
    columns = {r[1] for r in check.execute("PRAGMA table_info(outbox)")}
    version = check.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    check.close()
    assert {"confirm", "acked_at", "resends", "mono", "boot"} <= columns
    assert version == ("3",)
