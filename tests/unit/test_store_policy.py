"""The store's pure decisions: disk-full state and probes, error kinds, salvage search and checks."""

from __future__ import annotations

import errno
import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.envelope import Envelope, encode
from gateway.store.recovery import is_corruption, valid_outbox_row
from gateway.store.salvage import OUTBOX_COLUMNS, first_good
from gateway.store.space import SQLITE_IOERR_SHMSIZE, Probe, SpaceGuard, is_disk_full

NEED = 1000


def test_the_disk_full_state_is_news_once_per_episode() -> None:
    guard = SpaceGuard(need=NEED, backoff=2.0)
    assert not guard.full
    assert guard.enter(10.0) is True
    assert guard.enter(11.0) is False  # still full: nothing new to log
    assert guard.full and guard.episodes == 1
    assert guard.leave(20.0) is True
    assert guard.leave(21.0) is False
    assert guard.enter(100.0) is True and guard.episodes == 2


def test_probes_wait_for_the_backoff_then_for_room() -> None:
    guard = SpaceGuard(need=NEED, backoff=2.0)
    assert guard.plan(free=10**9, wal=0, now=0.0) is Probe.WAIT  # not full: nothing to probe
    guard.enter(10.0)
    assert guard.plan(free=10**9, wal=0, now=11.9) is Probe.WAIT  # backing off
    assert guard.plan(free=NEED, wal=0, now=12.0) is Probe.RESERVE
    assert guard.plan(free=NEED - 1, wal=0, now=12.0) is Probe.WAIT
    assert guard.plan(free=NEED - 300, wal=300, now=12.0) is Probe.TRUNCATE
    guard.failed(12.0)
    assert guard.plan(free=NEED, wal=0, now=13.0) is Probe.WAIT
    assert guard.plan(free=NEED, wal=0, now=14.0) is Probe.RESERVE


def test_a_disk_full_again_soon_after_leaving_waits_longer_each_time() -> None:
    guard = SpaceGuard(need=NEED, backoff=2.0, max_backoff=16.0, settle=60.0)
    now = 0.0
    waits = []
    for _ in range(6):
        guard.enter(now)
        waits.append(guard.not_before - now)
        now = guard.not_before
        assert guard.plan(free=NEED, wal=0, now=now) is Probe.RESERVE
        guard.leave(now)
        now += 1.0  # full again a second later
    assert waits == [2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
    guard.enter(now + 61.0)  # after a quiet minute, back to the short wait
    assert guard.not_before - (now + 61.0) == 2.0


def sqlite_error(kind: type[sqlite3.Error], message: str, code: int | None) -> sqlite3.Error:
    exc = kind(message)
    if code is not None:
        exc.sqlite_errorcode = code
    return exc


def test_disk_full_is_sqlite_full_a_failed_shm_growth_or_enospc() -> None:
    assert is_disk_full(sqlite_error(sqlite3.OperationalError, "database or disk is full", 13))
    assert is_disk_full(sqlite_error(sqlite3.OperationalError, "database or disk is full", None))
    assert is_disk_full(sqlite_error(sqlite3.OperationalError, "disk I/O error",
                                     SQLITE_IOERR_SHMSIZE))
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(sqlite_error(sqlite3.OperationalError, "database is locked", 5))
    assert not is_disk_full(sqlite_error(sqlite3.OperationalError, "disk I/O error", 10))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("database or disk is full"))


def test_corruption_is_sqlite_corrupt_or_notadb_and_nothing_else() -> None:
    assert is_corruption(sqlite_error(sqlite3.DatabaseError, "file is not a database", 26))
    assert is_corruption(sqlite_error(sqlite3.DatabaseError, "database disk image is malformed",
                                      11))
    assert is_corruption(sqlite_error(sqlite3.DatabaseError, "database disk image is malformed",
                                      None))
    assert not is_corruption(sqlite_error(sqlite3.OperationalError, "database is locked", 5))
    assert not is_corruption(sqlite_error(sqlite3.OperationalError,
                                          "unable to open database file", 14))
    assert not is_corruption(sqlite_error(sqlite3.OperationalError, "database or disk is full",
                                          13))
    assert not is_corruption(OSError("file is not a database"))


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_first_good_finds_the_end_of_a_bad_run_in_few_probes(lo: int, length: int,
                                                             extra: int) -> None:
    hi = lo + length + extra
    bad_end = lo + length  # values in [lo, bad_end) are bad
    probes: list[int] = []

    def good(x: int) -> bool:
        assert lo <= x <= hi
        probes.append(x)
        return x >= bad_end

    found = first_good(lo, hi, good)
    assert found == (bad_end if bad_end <= hi else None)
    assert len(probes) <= 2 * (hi - lo + 1).bit_length() + 2


def test_first_good_of_an_empty_range_is_none() -> None:
    assert first_good(5, 4, lambda x: True) is None
    assert first_good(5, 5, lambda x: False) is None
    assert first_good(5, 5, lambda x: True) == 5


def outbox_row(**changes: object) -> tuple[object, ...]:
    env = Envelope("gw", "E1", "dev", "alo", 7, 1_700_000_000.0, 21.5, "°C")
    row: dict[str, object] = {
        "epoch": "E1", "device": "dev", "stream": "alo", "seq": 7, "qos": 1,
        "ts": 1_700_000_000.0, "topic": "gw/gw/dev/alo", "payload": encode(env), "confirm": 0,
        "acked_at": None, "resends": 0, "mono": None, "boot": None}
    row.update(changes)
    return tuple(row[c] for c in OUTBOX_COLUMNS)


def test_a_salvaged_row_must_be_whole_and_carry_the_identity_its_columns_say() -> None:
    assert valid_outbox_row(outbox_row())
    assert valid_outbox_row(outbox_row(qos=2, confirm=1, acked_at=5.0, resends=2))
    assert not valid_outbox_row(outbox_row(seq=8))  # payload says 7
    assert not valid_outbox_row(outbox_row(epoch="E2"))
    assert not valid_outbox_row(outbox_row(payload=b'{"v":1,"gateway":"gw","epoch":"E1"'))
    assert not valid_outbox_row(outbox_row(payload="not bytes"))
    assert not valid_outbox_row(outbox_row(qos=0))
    assert not valid_outbox_row(outbox_row(seq="7"))
    assert not valid_outbox_row(outbox_row(topic=""))
    assert not valid_outbox_row(outbox_row(ts=None))
    assert valid_outbox_row(outbox_row(mono=12.5, boot="b1"))
    assert not valid_outbox_row(outbox_row(mono="12.5"))
    assert not valid_outbox_row(outbox_row(boot=7))
    assert not valid_outbox_row(outbox_row()[:-1])
