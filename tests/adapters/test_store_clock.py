"""Store schema v3 on real files: readings taken before the clock's sync keep their monotonic
time and boot, a v2 store made by the release before keeps every row, and the publisher
re-bases or marks what it sends (gateway.core.clock)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import cast

import pytest

from gateway.core.clock import MemoryClock, stamp
from gateway.core.envelope import Envelope, decode
from gateway.edge.ingest import Intake
from gateway.edge.publisher import Publisher
from gateway.mqtt.link import MqttLink, Session
from gateway.store.outbox import NewReading, Outbox
from gateway.store.schema import SCHEMA_VERSION
from tests.adapters.test_publisher_lanes import GW, NoIntake, RecordingLink

V2_STORE = Path(__file__).parent.parent / "fixtures" / "store-v2.sqlite"
BOOT_WALL = 1_600_000_000.0
STEP = 200_000_000.0


def open_box(path: Path) -> Outbox:
    return Outbox.open(path, GW, durability="normal", max_bytes=1 << 30)


def send_all(box: Outbox, clock: MemoryClock) -> list[bytes]:
    link = RecordingLink()
    pub = Publisher(cast(MqttLink, link), box, cast(Intake, NoIntake()), max_inflight=100,
                    max_payload_bytes=1 << 20, clock=clock)
    pub.connected(Session(session_present=False, receive_maximum=50, maximum_packet_size=None))
    pub._fill_window()
    return [payload for _, _, payload in link.sent]


def test_readings_before_the_sync_are_stored_with_their_boot_and_re_based_when_sent(
        tmp_path: Path) -> None:
    clock = MemoryClock(BOOT_WALL)
    box = open_box(tmp_path / "outbox.sqlite")
    try:
        early = NewReading("dev", "t", 1, clock.wall(), 1, None, "gw/t", False,
                           stamp(clock, clock.wall()))
        box.commit([early], [], [], Counter())
        clock.advance(10)
        clock.sync(STEP)
        late = NewReading("dev", "t", 1, clock.wall(), 2, None, "gw/t", False,
                          stamp(clock, clock.wall()))
        assert late.taken is None
        box.commit([late], [], [], Counter())
        rows = box.fetch(0, 10)
        assert [(r.mono, r.boot) for r in rows] == [(100.0, "boot-1"), (None, None)]
        sent = [decode(p) for p in send_all(box, clock)]
        assert all(isinstance(e, Envelope) for e in sent)
        first, second = cast(list[Envelope], sent)
        assert first.ts == pytest.approx(BOOT_WALL + STEP, abs=1e-3)  # re-based by the step
        assert second.ts == pytest.approx(BOOT_WALL + 10 + STEP, abs=1e-3)
        assert first.ts_quality is None and second.ts_quality is None
        assert sent_bytes_equal_stored(box, 1)
    finally:
        box.close(clean=True)


def sent_bytes_equal_stored(box: Outbox, row_index: int) -> bool:
    """A reading taken on a synchronised clock goes out as the bytes stored."""
    row = box.fetch(0, 10)[row_index]
    return send_all(box, MemoryClock(BOOT_WALL + STEP, synced=True))[row_index] == row.payload


def test_a_reading_of_an_earlier_boot_is_sent_marked_unsynced(tmp_path: Path) -> None:
    clock = MemoryClock(BOOT_WALL)
    path = tmp_path / "outbox.sqlite"
    box = open_box(path)
    box.commit([NewReading("dev", "t", 1, BOOT_WALL, 1, None, "gw/t", False,
                           stamp(clock, BOOT_WALL))], [], [], Counter())
    box.close(clean=True)
    clock.reboot("boot-2")
    clock.sync(STEP)
    box = open_box(path)
    try:
        [payload] = send_all(box, clock)
        body = json.loads(payload)
        assert body["ts_quality"] == "unsynced" and body["ts"] == "2020-09-13T12:26:40.000Z"
    finally:
        box.close(clean=True)


def v2_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(path)) as conn:
        return {
            "outbox": conn.execute("SELECT id, epoch, device, stream, seq, qos, ts, topic, payload, "
                                   "confirm, acked_at, resends FROM outbox ORDER BY id").fetchall(),
            "quarantine": conn.execute("SELECT * FROM quarantine ORDER BY id").fetchall(),
            "drops": conn.execute("SELECT * FROM drops").fetchall(),
            "sequences": conn.execute("SELECT * FROM sequences").fetchall(),
        }


def test_a_v2_store_of_the_release_before_migrates_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    shutil.copy(V2_STORE, path)
    before = v2_rows(path)
    assert len(before["outbox"]) == 5 and len(before["quarantine"]) == 1
    held_before = [row[0] for row in before["outbox"] if row[10] is not None]
    assert len(held_before) == 2
    box = Outbox.open(path, "gw-v2", durability="normal", max_bytes=1 << 30)
    try:
        assert box.continued  # stopped cleanly: the epoch goes on
        rows = box.fetch(0, 100)
        assert [r.id for r in rows if r.held] == held_before
        assert all(r.taken is None for r in rows)
        # Sent unchanged: the same bytes as stored by the release before (the held rows
        # wait for their confirmation).
        assert send_all(box, MemoryClock(0.0)) == [row[8] for row in before["outbox"]
                                                   if row[10] is None]
        box.commit([NewReading("dev", "t", 1, 1.8e9, 99, "°C", "gw/gw-v2/dev/t")], [], [],
                   Counter())
        newest = decode(box.fetch(0, 100)[-1].payload)
        assert isinstance(newest, Envelope) and (newest.epoch, newest.seq) == (
            before["sequences"][0][0], 7)
    finally:
        box.close(clean=True)
    after = v2_rows(path)
    assert after["outbox"][:5] == before["outbox"]
    assert {k: after[k] for k in ("quarantine", "drops")} == {
        k: before[k] for k in ("quarantine", "drops")}
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),)


def test_a_damaged_v2_store_is_salvaged_with_its_rows(tmp_path: Path) -> None:
    """The salvage reads the v2 layout (no mono, no boot): as if moved aside before the copy."""
    path = tmp_path / "outbox.sqlite"
    aside = tmp_path / "outbox.sqlite.corrupt-20260101T000000Z"
    shutil.copy(V2_STORE, aside)
    before = v2_rows(aside)
    open_box(path).close(clean=True)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('salvage_from', ?)", (str(aside),))
    box = open_box(path)
    try:
        rows = box.fetch(0, 100)
        assert [r.payload for r in rows] == [row[8] for row in before["outbox"]]
        assert [r.held for r in rows] == [row[10] is not None for row in before["outbox"]]
        assert all(r.taken is None for r in rows)
    finally:
        box.close(clean=True)
