"""A stream's `max_age` end to end: readings that waited too long while the broker was out of
reach are dropped and counted as `expired`, the next envelope tells the consumer which seqs,
and the consumer counts them as `dropped_by_gateway`, not as gaps. Every part is real."""

from __future__ import annotations

import time

import pytest

from tests.support.rig import Rig
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

STREAMS = {"alo": "at-least-once", "eo": "exactly-once", "fresh": "at-least-once, max_age: 1s"}


def expired(rig: Rig, stream: str) -> int:
    rows = rig.store_query("SELECT coalesce(sum(count), 0) FROM drops WHERE reason = 'expired' "
                           "AND stream = ?", (stream,))
    return int(str(rows[0][0]))


def test_readings_older_than_max_age_are_dropped_told_and_not_counted_as_gaps(
        rig_factory: type[Rig]) -> None:
    rig = rig_factory(via_proxy=True, streams=STREAMS)
    assert rig.proxy is not None
    rig.start_consumer()
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    rig.send(20)
    wait_for(lambda: len(rig.values("fresh")) >= 20, timeout=20, what="readings before the outage")
    rig.proxy.refuse()
    rig.gateway.wait_log(r"connection to .* lost|cannot reach", timeout=15)
    rig.send(30)
    rig.wait_stored()
    stored_at = time.monotonic()
    # The readings must outlive their max_age while the broker is away: a deadline, not a signal.
    wait_for(lambda: time.monotonic() - stored_at > 1.5, timeout=5, what="max_age to pass")
    rig.proxy.allow()
    wait_for(lambda: expired(rig, "fresh") == 30, timeout=30, what="30 expired readings")
    rig.send(10)  # the next envelope of the stream carries the notice
    rig.wait_delivered(timeout=60)
    wait_for(lambda: len(rig.values("fresh")) >= 30, timeout=20, what="fresh readings after")

    produced, delivered = len(rig.sent), sorted(rig.values("fresh"))
    assert delivered == [*range(1, 21), *range(51, 61)], "only the readings within max_age"
    [(received, gaps, on_purpose)] = rig.consumer_query(
        "SELECT received, gaps, dropped_by_gateway FROM stream_counters WHERE stream = 'fresh'")
    print(f"fresh: produced {produced}, delivered {len(delivered)}, expired "
          f"{expired(rig, 'fresh')}, consumer gaps {gaps}, dropped_by_gateway {on_purpose}")
    assert (received, gaps, on_purpose) == (30, 0, 30)
    for stream in ("alo", "eo"):  # the durable streams without max_age lose nothing
        assert sorted(rig.values(stream)) == list(range(1, 61)), stream
        assert expired(rig, stream) == 0
    status = rig.status()
    assert status["drops"] == {"expired": 30}, status["drops"]  # type: ignore[index]
