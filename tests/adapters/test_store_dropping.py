"""Drop policies on a real outbox: `on_full: drop-oldest` and a stream's `max_age` drop stored
rows counted by reason, and the next envelope of the stream tells the consumer which seqs
(gateway.store.dropping); expiring rows go with the MQTT 5 Message Expiry Interval."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.core.clock import MemoryClock
from gateway.edge.ingest import Intake
from gateway.edge.publisher import Publisher
from gateway.mqtt.link import MqttLink, Session
from gateway.store.outbox import NewReading, Outbox
from tests.adapters.test_publisher_lanes import GW, NoIntake, RecordingLink
from tests.adapters.test_store import query

SUCCESS = ReasonCode(PacketTypes.PUBACK)
NOW = 1.8e9


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox.open(tmp_path / "outbox.sqlite", GW, durability="normal", max_bytes=1 << 30)
    yield outbox
    outbox.close(clean=True)


def readings(count: int, *, stream: str = "s", ts: float = NOW) -> list[NewReading]:
    return [NewReading("dev", stream, 1, ts + i, i, None, f"gw/{GW}/dev/{stream}")
            for i in range(count)]


def publisher_on(box: Outbox, clock: MemoryClock, max_ages: dict[tuple[str, str], float]
                 ) -> tuple[Publisher, RecordingLink]:
    link = RecordingLink()
    pub = Publisher(cast(MqttLink, link), box, cast(Intake, NoIntake()), max_inflight=100,
                    max_payload_bytes=1 << 20, clock=clock)
    pub.max_ages = max_ages
    pub.connected(Session(session_present=False, receive_maximum=100, maximum_packet_size=None))
    return pub, link


def drops(box: Outbox) -> dict[str, int]:
    return {reason: n for reason, _, _, n in query(box.path, "SELECT * FROM drops")}


def test_drop_oldest_makes_room_counts_evicted_and_the_next_envelope_tells(box: Outbox) -> None:
    box.commit(readings(300), [], [], Counter())
    box.max_bytes = box.bytes_used  # full from here on
    box.on_full = "drop-oldest"
    result = box.commit(readings(20, ts=NOW + 300), [], [], Counter())
    assert (result.stored, result.refused, result.evicted) == (20, 0, 20)
    seqs = [row.seq for row in box.fetch(0, 1000)]
    assert seqs == list(range(21, 321))  # the 20 oldest made room; 300 rows stay
    assert drops(box) == {"evicted": 20}
    assert box.notices == {(box.epoch, "dev", "s"): (1, 20)}

    pub, link = publisher_on(box, MemoryClock(NOW, synced=True), {})
    pub._fill_window()
    first = json.loads(link.sent[0][2])
    assert (first["seq"], first["dropped"]) == (21, [1, 20])
    pub._on_publish(1, SUCCESS)
    acked, quarantined, _ = pub.take_settled()
    box.commit([], acked, quarantined, Counter(), dropping=pub.take_dropping())
    assert box.notices == {}
    assert query(box.path, "SELECT count(*) FROM drop_notices") == [(0,)]


def test_refuse_new_is_the_default_and_evicts_nothing(box: Outbox) -> None:
    box.commit(readings(50), [], [], Counter())
    box.max_bytes = box.bytes_used
    result = box.commit(readings(5), [], [], Counter())
    assert (result.stored, result.refused, result.evicted) == (0, 5, 0)
    assert drops(box) == {"store_full": 5} and box.notices == {}


def test_expired_rows_are_dropped_not_sent_and_the_rest_carry_what_remains(box: Outbox) -> None:
    clock = MemoryClock(NOW + 100, synced=True)
    box.commit(readings(10), [], [], Counter())  # ts NOW .. NOW + 9: ages 100 .. 91 s
    box.commit(readings(3, stream="other"), [], [], Counter())
    pub, link = publisher_on(box, clock, {("dev", "s"): 95.0})
    pub._fill_window()
    sent = [json.loads(payload) for _, _, payload in link.sent]
    assert [(m["stream"], m["seq"]) for m in sent] == [
        ("s", 7), ("s", 8), ("s", 9), ("s", 10), ("other", 1), ("other", 2), ("other", 3)]
    # Age of seq 7 is 94 s: 1 s of its 95 remains; a stream without max_age has no expiry.
    assert [link.expiry[mid] for mid, _, _ in link.sent] == [1, 2, 3, 4, None, None, None]
    assert len(pub.dropping.expired) == 6
    result = box.commit([], [], [], Counter(), dropping=pub.take_dropping())
    assert result.expired == 6
    assert drops(box) == {"expired": 6}
    assert box.notices == {(box.epoch, "dev", "s"): (1, 6)}
    box.commit(readings(1, ts=NOW + 100), [], [], Counter())
    pub._fill_window()
    last = json.loads(link.sent[-1][2])
    assert (last["seq"], last["dropped"]) == (11, [1, 6])


def test_a_failed_commit_gives_the_expired_rows_back(box: Outbox) -> None:
    box.commit(readings(3), [], [], Counter())
    pub, _ = publisher_on(box, MemoryClock(NOW + 1000, synced=True), {("dev", "s"): 10.0})
    pub._fill_window()
    taken = pub.take_dropping()
    assert len(taken.expired) == 3
    pub.give_back(taken)
    assert len(pub.take_dropping().expired) == 3
