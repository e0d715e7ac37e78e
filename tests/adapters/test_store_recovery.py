"""A corrupt store file at start: moved aside, a new store begun, what can be read salvaged.

Real files only: a store written by the outbox, then damaged on disk (a page
in the middle of the file overwritten, or the whole file random bytes).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from gateway.store import opening as store_open
from gateway.store.outbox import Outbox
from gateway.store.recovery import aside_name
from gateway.store.sql import StoreError
from tests.adapters.test_store import (
    ALARM,
    BIG,
    GW,
    PULSES,
    TEMP,
    all_rows,
    envelope,
    identity,
    meta,
    open_outbox,
    query,
    reading,
    seqs_by_stream,
)

Ident = tuple[str, str, str, str, int]


def write_store(db: Path, rows: int) -> tuple[str, dict[int, tuple[Ident, bytes]]]:
    """A cleanly closed store holding `rows` readings; its epoch and rowid -> (identity, payload)."""
    box = open_outbox(db)
    keys = [TEMP, ALARM, PULSES]
    for start in range(0, rows, 500):
        box.commit([reading(keys[i % 3], qos=1 if keys[i % 3] == TEMP else 2, value="x" * 150)
                    for i in range(start, min(rows, start + 500))], [], [],
                   Counter({("line_too_long", "climate", "temperature"): 1}))
    stored = {r.id: (identity(r), r.payload) for r in all_rows(box)}
    epoch = box.epoch
    assert box.close(clean=True)
    assert not Path(f"{db}-wal").exists()  # everything is in the main file
    return epoch, stored


def varint(data: bytes, at: int) -> tuple[int, int]:
    """An SQLite varint at `at`: (value, next offset)."""
    value = 0
    for i in range(8):
        byte = data[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | data[at + 8], at + 9


def leaf_rowids(page: bytes) -> list[int]:
    """The rowids on a table b-tree leaf page (not page 1), or [] for any other page."""
    if page[0] != 0x0D:
        return []
    cells = int.from_bytes(page[3:5], "big")
    rowids = []
    for i in range(cells):
        at = int.from_bytes(page[8 + 2 * i:10 + 2 * i], "big")
        _, at = varint(page, at)
        rowid, _ = varint(page, at)
        rowids.append(rowid)
    return rowids


def corrupt_middle_leaf(db: Path, outbox_ids: set[int]) -> set[int]:
    """Overwrite an outbox leaf page near the middle of the table; the rowids it held."""
    with closing(sqlite3.connect(db)) as conn:
        leaves = [n for (n,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = 'outbox' AND pagetype = 'leaf' ORDER BY pageno")]
    data = bytearray(db.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for n in sorted(leaves, key=lambda n: abs(n - leaves[len(leaves) // 2])):
        at = (n - 1) * page_size  # SQLite numbers pages from 1
        on_page = set(leaf_rowids(bytes(data[at:at + page_size])))
        if len(on_page) >= 2 and on_page <= outbox_ids:
            data[at:at + page_size] = bytes(range(256)) * (page_size // 256)
            db.write_bytes(bytes(data))
            return on_page
    pytest.fail("no outbox leaf page found to corrupt")


def the_aside(db: Path) -> Path:
    [aside] = [p for p in db.parent.glob(f"{db.name}.corrupt-*")
               if not p.name.endswith(("-wal", "-shm"))]
    assert re.fullmatch(re.escape(db.name) + r"\.corrupt-\d{8}T\d{6}Z(\.\d+)?", aside.name)
    return aside


def test_a_store_with_a_damaged_page_is_moved_aside_and_every_intact_row_salvaged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "state" / "outbox.sqlite"
    old_epoch, stored = write_store(db, 1500)
    lost_ids = corrupt_middle_leaf(db, set(stored))
    damaged = db.read_bytes()
    with closing(sqlite3.connect(db)) as check, pytest.raises(sqlite3.DatabaseError):
        assert check.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        raise sqlite3.DatabaseError("quick_check found the damage")

    with caplog.at_level(logging.WARNING, logger="gateway.store"):
        box = open_outbox(db)
    try:
        aside = the_aside(db)
        assert aside.read_bytes() == damaged
        [moved] = [r for r in caplog.records if "is corrupt" in r.message]
        assert moved.levelno == logging.ERROR
        assert str(db) in moved.message and str(aside) in moved.message
        assert not box.continued and box.epoch != old_epoch

        rows = all_rows(box)
        expected = {ident: payload for rowid, (ident, payload) in stored.items()
                    if rowid not in lost_ids}
        assert {identity(r): r.payload for r in rows} == expected  # every intact row, exactly
        assert [r.id for r in rows] == sorted(r.id for r in rows)
        for key, seqs in seqs_by_stream(rows).items():  # old order kept within each stream
            assert seqs == sorted(seqs), key
        # Counted and logged: the rows that could not be read (an upper bound), the recovery.
        counted = query(db, "SELECT count FROM drops WHERE reason = 'store_corrupt'")
        assert counted == [(len(lost_ids),)]
        assert query(db, "SELECT count FROM drops WHERE reason = 'line_too_long'") == [(3,)]
        assert meta(db)["store_recovered"] == "1"
        assert "salvage_from" not in meta(db)
        [salvaged] = [r for r in caplog.records if "salvaged" in r.message]
        assert f"salvaged {len(expected)} stored readings" in salvaged.message
        assert f"could not be read: {len(lost_ids)} " in salvaged.message
        # The old epoch's counters came along: seqs it issued are still known.
        assert box.issued(old_epoch, *TEMP) == 500

        # The new store works: new readings start the new epoch at seq 1, after the old rows.
        box.commit([reading(TEMP)], [rows[0].id], [], Counter())
        newest = all_rows(box)[-1]
        assert (envelope(newest).epoch, envelope(newest).seq) == (box.epoch, 1)
        assert newest.id > rows[-1].id
    finally:
        box.close(clean=True)
    reopened = open_outbox(db)  # no second recovery: the new store is sound
    try:
        assert reopened.continued
        assert len(list(db.parent.glob("*.corrupt-*"))) == 1
    finally:
        reopened.close(clean=True)


def test_a_file_of_random_bytes_is_moved_aside_and_a_new_store_starts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "state" / "outbox.sqlite"
    db.parent.mkdir()
    noise = os.urandom(64 * 1024)
    db.write_bytes(noise)
    Path(f"{db}-wal").write_bytes(os.urandom(5000))
    with caplog.at_level(logging.WARNING, logger="gateway.store"):
        box = open_outbox(db)
    try:
        aside = the_aside(db)
        assert aside.read_bytes() == noise
        assert "could not be read: an unknown number" in caplog.text
        assert all_rows(box) == []
        box.commit([reading(TEMP), reading(ALARM, qos=2)], [], [], Counter())
        assert seqs_by_stream(all_rows(box)) == {TEMP: [1], ALARM: [1]}
        assert meta(db)["store_recovered"] == "1"
        assert meta(db)["store_lost_unknown"] == "1"
        assert meta(db)["store_lost_unknown_last"] == str(aside)
    finally:
        box.close(clean=True)


def test_a_zero_length_store_beside_its_reserve_is_a_loss_moved_aside_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`truncate -s 0` on a store: SQLite would take the file for a new database."""
    db = tmp_path / "state" / "outbox.sqlite"
    write_store(db, 30)
    assert Path(f"{db}.reserve").exists()
    os.truncate(db, 0)
    with caplog.at_level(logging.WARNING, logger="gateway.store"):
        box = open_outbox(db)
    try:
        aside = the_aside(db)
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(str(db) in e and "empty (0 bytes)" in e and str(aside) in e
                   for e in errors), errors
        assert any("an unknown number" in e for e in errors), errors
        assert (meta(db)["store_recovered"], meta(db)["store_lost_unknown"]) == ("1", "1")
        assert meta(db)["store_lost_unknown_last"] == str(aside)
        assert not box.continued
    finally:
        box.close(clean=True)


def test_a_zero_length_file_without_a_reserve_is_a_new_store(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite"
    db.touch()
    box = open_outbox(db)
    try:
        assert list(tmp_path.glob("*.corrupt-*")) == []
        assert "store_lost_unknown" not in meta(db)
    finally:
        box.close(clean=True)


def test_a_store_cut_short_is_counted_as_a_loss_of_unknown_size(tmp_path: Path) -> None:
    """Truncated to its first pages (the header survives): the rest cannot be counted."""
    db = tmp_path / "outbox.sqlite"
    write_store(db, 600)
    os.truncate(db, 4096)
    box = open_outbox(db)
    try:
        aside = the_aside(db)
        assert meta(db)["store_lost_unknown_last"] == str(aside)
    finally:
        box.close(clean=True)


def test_a_second_corrupt_store_gets_the_same_treatment_and_is_counted(tmp_path: Path) -> None:
    db = tmp_path / "state" / "outbox.sqlite"
    _, stored = write_store(db, 600)
    corrupt_middle_leaf(db, set(stored))
    open_outbox(db).close(clean=True)
    first = the_aside(db)

    # The new store is damaged in turn, beyond reading (within the same second, often).
    db.write_bytes(os.urandom(db.stat().st_size))
    box = open_outbox(db)
    try:
        asides = sorted(p for p in db.parent.glob("outbox.sqlite.corrupt-*")
                        if not p.name.endswith(("-wal", "-shm")))
        assert len(asides) == 2 and first in asides
        assert meta(db)["store_recovered"] == "2"  # its own meta was unreadable: files counted
        assert all_rows(box) == []
    finally:
        box.close(clean=True)


def test_a_salvage_cut_short_by_a_crash_is_done_at_the_next_start(tmp_path: Path) -> None:
    """`salvage_from` stays in meta until the copy committed; the next start does it."""
    db = tmp_path / "state" / "outbox.sqlite"
    old_epoch, stored = write_store(db, 40)
    aside = db.with_name("outbox.sqlite.corrupt-20260101T000000Z")
    shutil.move(db, aside)  # as if moved aside, then the process died before the copy
    open_outbox(db).close(clean=True)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('salvage_from', ?)", (str(aside),))

    box = open_outbox(db)
    try:
        assert {identity(r) for r in all_rows(box)} == {ident for ident, _ in stored.values()}
        assert "salvage_from" not in meta(db)
        assert box.issued(old_epoch, *ALARM) == 13
    finally:
        box.close(clean=True)
    again = open_outbox(db)  # done once, not again
    try:
        assert len(all_rows(again)) == 40
    finally:
        again.close(clean=True)


def test_a_store_held_by_another_process_is_not_taken_for_a_corrupt_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only SQLite's verdict on the file moves it: a store another writer holds stays put."""
    monkeypatch.setattr(store_open, "BUSY_TIMEOUT_MS", 50)  # where the store is opened
    db = tmp_path / "state" / "outbox.sqlite"
    write_store(db, 10)
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("PRAGMA journal_mode=DELETE")  # so the gateway must take a write lock
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match=re.escape(str(db)) + ".*locked"):
            Outbox.open(db, GW, durability="normal", max_bytes=BIG)
        other.execute("ROLLBACK")
    assert list(db.parent.glob("*.corrupt-*")) == []
    box = open_outbox(db)
    try:
        assert len(all_rows(box)) == 10
    finally:
        box.close(clean=True)


def test_a_store_path_that_cannot_be_opened_is_a_store_error_and_nothing_moves(
        tmp_path: Path) -> None:
    db = tmp_path / "state" / "outbox.sqlite"
    db.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(StoreError, match=re.escape(str(db))):
        open_outbox(db)
    assert db.is_dir() and list(db.parent.glob("*.corrupt-*")) == []


def test_aside_names_are_utc_stamped_and_never_reuse_a_taken_one() -> None:
    taken = {"outbox.sqlite.corrupt-19700101T000100Z", "outbox.sqlite.corrupt-19700101T000100Z.2"}
    assert aside_name("outbox.sqlite", 60.0, lambda n: False) == (
        "outbox.sqlite.corrupt-19700101T000100Z")
    assert aside_name("outbox.sqlite", 60.9, taken.__contains__) == (
        "outbox.sqlite.corrupt-19700101T000100Z.3")


def test_a_big_store_stopped_cleanly_is_not_read_whole_at_start_but_after_an_unclean_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_open, "CHECK_ALWAYS_BYTES", 0)  # every store counts as big
    db = tmp_path / "state" / "outbox.sqlite"
    old_epoch, stored = write_store(db, 1500)  # stopped cleanly
    lost_ids = corrupt_middle_leaf(db, set(stored))
    box = open_outbox(db)  # no quick_check: the damage is not read at start
    try:
        assert box.continued and box.epoch == old_epoch
        assert not list(db.parent.glob("*.corrupt-*"))
    finally:
        box.close(clean=False)  # how a run that met the damage ends (a task died)
    box = open_outbox(db)  # after the unclean stop the whole store is checked
    try:
        the_aside(db)
        assert not box.continued
        assert len(all_rows(box)) == len(stored) - len(lost_ids)
    finally:
        box.close(clean=True)
