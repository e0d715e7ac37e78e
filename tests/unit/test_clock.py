"""Clocks without an RTC (gateway.core.clock): readings taken before the sync are re-based
from the monotonic clock once it syncs in the same boot, marked `unsynced` otherwise."""

from __future__ import annotations

import json

import pytest

from gateway.core.clock import UNSYNCED, MemoryClock, Unsynced, restamp, settle_ts, stamp
from gateway.core.envelope import Envelope, decode, encode

BOOT_WALL = 1_600_000_000.0  # where an RTC-less board's clock starts: years behind
STEP = 200_000_000.0  # what NTP moves it by at the sync


def test_a_synchronised_clock_stamps_nothing() -> None:
    clock = MemoryClock(BOOT_WALL + STEP, synced=True)
    assert stamp(clock, clock.wall()) is None
    assert settle_ts(clock, 123.0, None) == (123.0, None)


def test_a_reading_before_the_sync_is_re_based_by_the_step_once_synced() -> None:
    clock = MemoryClock(BOOT_WALL)
    taken_ts = clock.wall() - 0.25  # a record the driver stamped a quarter second ago
    taken = stamp(clock, taken_ts)
    assert taken == Unsynced(clock.monotonic() - 0.25, "boot-1")
    assert settle_ts(clock, taken_ts, taken) == (taken_ts, UNSYNCED)  # not yet synced
    clock.advance(30)
    clock.sync(STEP)
    clock.advance(5)
    ts, quality = settle_ts(clock, taken_ts, taken)
    assert quality is None
    assert ts == pytest.approx(taken_ts + STEP, abs=1e-6)


def test_a_reading_from_an_earlier_boot_cannot_be_re_based_and_is_marked() -> None:
    clock = MemoryClock(BOOT_WALL)
    taken = stamp(clock, clock.wall())
    clock.reboot("boot-2")
    clock.sync(STEP)
    assert settle_ts(clock, BOOT_WALL, taken) == (BOOT_WALL, UNSYNCED)


def test_restamp_rewrites_only_ts_and_ts_quality_of_the_stored_payload() -> None:
    clock = MemoryClock(BOOT_WALL)
    env = Envelope("gw", "E", "dev", "t", 7, BOOT_WALL, {"a": [1, 2]}, "°C", confirm=True)
    payload = encode(env)
    taken = stamp(clock, BOOT_WALL)
    assert restamp(clock, payload, BOOT_WALL, None) is payload
    marked = json.loads(restamp(clock, payload, BOOT_WALL, taken))
    assert marked == {**json.loads(payload), "ts_quality": "unsynced"}
    clock.sync(STEP)
    rebased = decode(restamp(clock, payload, BOOT_WALL, taken))
    assert isinstance(rebased, Envelope)
    assert rebased.ts == pytest.approx(BOOT_WALL + STEP, abs=1e-3)
    assert (rebased.seq, rebased.value, rebased.unit, rebased.confirm, rebased.ts_quality) == (
        7, {"a": [1, 2]}, "°C", True, None)


def test_restamp_leaves_a_payload_it_cannot_read_alone() -> None:
    clock = MemoryClock(BOOT_WALL)
    assert restamp(clock, b"not json", BOOT_WALL, stamp(clock, BOOT_WALL)) == b"not json"
