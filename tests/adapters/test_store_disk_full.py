"""The outbox on a real full disk: a small tmpfs, filled with ballast or by the store itself.

The tests run as root and mount a tmpfs as the state dir; a mount that is not
permitted fails the test (it is the only way to test a full disk for real).
What they prove, counted: a commit that finds no room drops its new readings
as `disk_full` (counted in the same transaction as the acks it still
applies); acknowledged rows are deleted while the disk stays full (the
reserve is given back to SQLite); no stored row is lost; storing resumes by
itself once there is room again.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store.outbox import NewReading, Outbox
from gateway.store.space import PROBE_BACKOFF, RESERVE_BYTES, RESUME_HEADROOM, DiskFullError
from gateway.store.sql import StoreError
from tests.adapters.test_store import ALARM, BIG, GW, TEMP, all_rows, query, reading, seqs_by_stream
from tests.support.tmpfs import Tmpfs, mounted_tmpfs


class Clock:
    """A monotonic clock the test moves by hand (the store backs off between probes)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Tmpfs]:
    with mounted_tmpfs(tmp_path / "disk") as disk:
        yield disk


def open_on(fs: Tmpfs, clock: Clock) -> Outbox:
    return Outbox.open(fs.path / "outbox.sqlite", GW, durability="normal", max_bytes=BIG,
                       clock=clock)


def batch(n: int) -> list[NewReading]:
    return [reading(TEMP if i % 2 else ALARM, qos=1 if i % 2 else 2, value="v" * 200)
            for i in range(n)]


def drops(path: Path, reason: str) -> int:
    return int(query(path, "SELECT coalesce(sum(count), 0) FROM drops WHERE reason = ?",
                     (reason,))[0][0])


def fill_until_disk_full(box: Outbox, per_commit: int = 20, limit: int = 5000
                         ) -> tuple[int, int]:
    """Commit readings until one commit reports disk_full; (stored, dropped) in all."""
    stored = 0
    for _ in range(limit):
        result = box.commit(batch(per_commit), [], [], Counter())
        stored += result.stored
        if result.disk_full:
            assert result.stored == 0 and result.disk_full == per_commit, result
            return stored, result.disk_full
        assert result.stored == per_commit, result
    pytest.fail(f"{limit * per_commit} readings stored on a full disk without SQLITE_FULL")


def test_a_full_disk_drops_new_readings_as_disk_full_deletes_acked_rows_and_recovers(
        disk: Tmpfs, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.store")
    clock = Clock()
    box = open_on(disk, clock)
    try:
        assert box.reserve.held() and box.reserve.path.parent == disk.path
        assert not box.disk_full
        first = box.commit(batch(100), [], [], Counter())
        assert first.stored == 100

        ballast = disk.fill()
        assert ballast > 0 and disk.free_bytes() < 4096
        stored, dropped = fill_until_disk_full(box)
        assert box.disk_full
        assert not box.reserve.path.exists(), "the reserve was not given back"
        rows = all_rows(box)
        assert len(rows) == 100 + stored, "a stored row went missing"
        assert drops(box.path, "disk_full") == dropped

        # While full, new readings are refused without trying; drop counts still commit.
        result = box.commit(batch(10), [], [], Counter({("bad_line", "climate", "temperature"): 1}))
        assert (result.stored, result.disk_full, result.refused) == (0, 10, 0)
        assert drops(box.path, "disk_full") == dropped + 10
        assert drops(box.path, "bad_line") == 1

        # Acknowledgements still delete rows: the disk is full, the reserve is spent on them.
        assert disk.ballast.exists() and disk.free_bytes() < RESERVE_BYTES + RESUME_HEADROOM
        half = [r.id for r in rows[: len(rows) // 2]]
        result = box.commit(batch(4), half, [], Counter())
        assert (result.stored, result.deleted, result.disk_full) == (0, len(half), 4)
        assert [r.id for r in all_rows(box)] == [r.id for r in rows[len(half):]]
        rest = [r.id for r in rows[len(half):]]
        assert box.commit([], rest, [], Counter()).deleted == len(rest)
        assert box.pending_count() == 0
        assert query(box.path, "SELECT count(*) FROM outbox") == [(0,)]
        assert box.disk_full

        # Space comes back: storing resumes by itself (after the probe back-off), reserve remade.
        disk.free()
        result = box.commit(batch(10), [], [], Counter())
        if result.stored == 0:  # still inside the back-off that entering the state began
            assert result.disk_full == 10
            clock.advance(PROBE_BACKOFF)
            result = box.commit(batch(10), [], [], Counter())
        assert (result.stored, result.disk_full) == (10, 0)
        assert not box.disk_full
        assert box.reserve.held()
        new = all_rows(box)
        assert len(new) == 10
        # Refused readings were given no seq: the streams go on from the last stored one.
        seqs = seqs_by_stream(new)
        assert seqs[TEMP][0] == (100 + stored) // 2 + 1
        assert seqs[ALARM][0] == (100 + stored) // 2 + 1
    finally:
        box.close(clean=True)

    full = [r for r in caplog.records if "disk full, new durable readings are dropped" in r.message]
    back = [r for r in caplog.records if "disk space is back" in r.message]
    assert len(full) == 1 and full[0].levelno == logging.ERROR, [r.message for r in full]
    assert len(back) == 1, [r.message for r in back]
    assert drops(box.path, "disk_full") == query(
        box.path, "SELECT sum(count) FROM drops WHERE reason = 'disk_full'")[0][0]


def test_a_commit_with_no_room_even_for_its_acks_raises_and_changes_nothing(
        disk: Tmpfs) -> None:
    clock = Clock()
    box = open_on(disk, clock)
    box.commit(batch(2000), [], [], Counter())
    box.close(clean=True)  # the WAL is truncated: the next write must grow it

    box = open_on(disk, clock)
    try:
        ids = [r.id for r in all_rows(box)]
        assert len(ids) == 2000
        disk.fill()
        os.unlink(box.reserve.path)  # no reserve left to give back, and no room at all
        disk.fill()
        before = query(box.path, "SELECT count(*), (SELECT count(*) FROM drops) FROM outbox")
        with pytest.raises(DiskFullError):
            box.commit(batch(5), ids, [], Counter({("bad_line", "climate", "temperature"): 1}))
        assert box.disk_full
        assert not box._conn.in_transaction
        assert query(box.path, "SELECT count(*), (SELECT count(*) FROM drops) FROM outbox") == before
        assert len(all_rows(box)) == 2000

        # The caller keeps the acks for the next commit; it goes through once there is room.
        disk.free()
        result = box.commit([], ids, [], Counter())
        assert result.deleted == 2000
        assert box.pending_count() == 0
    finally:
        box.close(clean=True)


def leave_free(fs: Tmpfs, free: int) -> None:
    """Ballast that leaves `free` bytes free."""
    with fs.ballast.open("wb") as f:
        f.write(b"\0" * (fs.free_bytes() - free))


def test_a_store_opened_on_a_full_disk_starts_refusing_and_resumes_when_there_is_room(
        disk: Tmpfs, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    box = open_on(disk, clock)
    box.commit(batch(10), [], [], Counter())
    box.close(clean=True)
    os.unlink(box.reserve.path)
    leave_free(disk, RESERVE_BYTES // 2)  # room to open, not for the reserve

    box = open_on(disk, clock)
    try:
        assert "disk full at start" in caplog.text
        assert box.disk_full and not box.reserve.held()
        assert box.continued
        result = box.commit(batch(4), [r.id for r in all_rows(box)[:5]], [], Counter())
        assert (result.stored, result.deleted, result.disk_full) == (0, 5, 4)
        clock.advance(PROBE_BACKOFF)
        assert box.commit(batch(4), [], [], Counter()).disk_full == 4  # still no room
        disk.free()
        clock.advance(PROBE_BACKOFF)
        result = box.commit(batch(4), [], [], Counter())
        assert (result.stored, result.disk_full) == (4, 0)
        assert box.reserve.held() and not box.disk_full
        assert box.pending_count() == 9
        assert drops(box.path, "disk_full") == 8
    finally:
        box.close(clean=True)


def test_a_disk_with_no_room_to_open_the_store_gives_a_store_error_naming_it(
        disk: Tmpfs) -> None:
    box = open_on(disk, Clock())
    box.close(clean=True)  # SQLite deletes the -wal and -shm: opening must make them again
    os.unlink(box.reserve.path)
    disk.fill()
    with pytest.raises(StoreError, match=re.escape(str(box.path)) + ".*disk is full"):
        open_on(disk, Clock())
    disk.free()
    open_on(disk, Clock()).close(clean=True)
