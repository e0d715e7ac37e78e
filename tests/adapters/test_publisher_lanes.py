"""The publisher's order on a real outbox: live rows ahead of a backlog, each row sent once.

The link is a recording stand-in (no broker): it hands out packet ids and
keeps what was published, so the order can be checked exactly; the
acknowledgements are fed back through the publisher's own callback.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.edge.ingest import Intake
from gateway.edge.publisher import Publisher
from gateway.mqtt.link import MqttLink, Session
from gateway.store.outbox import NewReading, Outbox

GW = "gw-lanes"
WINDOW = 20


class RecordingLink:
    """What the publisher needs of `MqttLink`, recording every publish."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[int, str, bytes]] = []  # (mid, topic, payload)
        self.on_publish: Any = None
        self.acked: set[int] = set()
        self.expiry: dict[int, int | None] = {}  # mid -> the Message Expiry Interval sent
        self._mid = 0

    def publish(self, topic: str, payload: bytes, qos: int, *,
                expiry: int | None = None) -> int | None:
        self._mid += 1
        self.sent.append((self._mid, topic, payload))
        self.expiry[self._mid] = expiry
        return self._mid


class NoIntake:
    """No at-most-once readings in these tests."""

    def __init__(self) -> None:
        self.volatile: deque[Any] = deque()

    def drop(self, reason: str, device: str, stream: str, count: int = 1) -> None:
        raise AssertionError(f"unexpected drop {reason}")


def stored(box: Outbox, stream: str, count: int) -> None:
    readings = [NewReading("dev", stream, 1, 1.8e9 + i, i, None, f"gw/{GW}/dev/{stream}")
                for i in range(count)]
    box.commit(readings, [], [], Counter())


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox.open(tmp_path / "outbox.sqlite", GW, durability="normal", max_bytes=1 << 30)
    yield outbox
    outbox.close(clean=True)


def publisher_on(box: Outbox) -> tuple[Publisher, RecordingLink]:
    link = RecordingLink()
    pub = Publisher(cast(MqttLink, link), box, cast(Intake, NoIntake()), max_inflight=100,
                    max_payload_bytes=1 << 20)
    pub.connected(Session(session_present=False, receive_maximum=WINDOW, maximum_packet_size=None))
    return pub, link


def ack(pub: Publisher, link: RecordingLink, count: int, box: Outbox) -> None:
    """Acknowledge the oldest `count` messages in flight, commit, refill."""
    in_flight = [mid for mid, _, _ in link.sent if mid not in link.acked][:count]
    for mid in in_flight:
        pub._on_publish(mid, ReasonCode(PacketTypes.PUBACK))
        link.acked.add(mid)
    settled, quarantined, held = pub.take_settled()
    box.commit([], settled, quarantined, Counter())
    pub.committed(settled, quarantined, held)
    pub._fill_window()


def streams_sent(link: RecordingLink) -> list[str]:
    return [topic.rsplit("/", 1)[1] for _, topic, _ in link.sent]


def test_rows_stored_after_connecting_go_ahead_of_the_backlog(box: Outbox) -> None:
    stored(box, "backlog", 200)
    pub, link = publisher_on(box)
    pub._fill_window()
    assert streams_sent(link) == ["backlog"] * WINDOW  # the window, no more

    stored(box, "live", 3)
    ack(pub, link, 5, box)  # a quarter of the window frees: live first, then the backlog
    assert streams_sent(link)[WINDOW:] == ["live"] * 3 + ["backlog"] * 2

    stored(box, "live", 1)
    ack(pub, link, 4, box)  # below a quarter: no refill yet
    assert len(link.sent) == WINDOW + 5
    ack(pub, link, 1, box)
    assert streams_sent(link)[WINDOW + 5] == "live"

    for _ in range(200):  # drain everything
        if not box.pending_count():
            break
        ack(pub, link, WINDOW, box)
    stored(box, "after", 2)  # one lane again once the backlog is sent
    ack(pub, link, WINDOW, box)
    ack(pub, link, WINDOW, box)

    sent = Counter((topic, payload) for _, topic, payload in link.sent)
    assert sum(n for (topic, _), n in sent.items() if topic.endswith("/backlog")) == 200
    assert sum(n for (topic, _), n in sent.items() if topic.endswith("/live")) == 4
    assert sum(n for (topic, _), n in sent.items() if topic.endswith("/after")) == 2
    assert max(sent.values()) == 1  # every row sent exactly once
    assert box.pending_count() == 0


def test_each_lane_keeps_seq_order_per_stream(box: Outbox) -> None:
    stored(box, "s", 50)
    pub, link = publisher_on(box)
    pub._fill_window()
    stored(box, "s", 30)  # the same stream, stored after connecting: the live lane
    for _ in range(50):
        if not box.pending_count():
            break
        ack(pub, link, WINDOW, box)
    seqs = [int(payload.split(b'"seq":')[1].split(b",")[0]) for _, _, payload in link.sent]
    assert sorted(seqs) == list(range(1, 81))
    backlog = [s for s in seqs if s <= 50]
    live = [s for s in seqs if s > 50]
    assert backlog == sorted(backlog) and live == sorted(live)
    assert seqs.index(51) < seqs.index(50)  # live went ahead of the end of the backlog
