"""Each row's life through the publisher on a real outbox: retried, quarantined, held, resent.

The link is the recording stand-in of test_publisher_lanes.py; the row
states are read from the publisher's ledger (gateway.core.outbox_states)
and the outcome from the store.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.core.outbox_states import RowState
from gateway.edge.ingest import Intake
from gateway.edge.publisher import Publisher
from gateway.mqtt.link import MqttLink, Session
from gateway.store.confirmations import Confirmations
from gateway.store.outbox import NewReading, Outbox
from tests.adapters.test_publisher_lanes import GW, NoIntake, RecordingLink
from tests.adapters.test_store import query

SUCCESS = ReasonCode(PacketTypes.PUBACK)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox.open(tmp_path / "outbox.sqlite", GW, durability="normal", max_bytes=1 << 30)
    yield outbox
    outbox.close(clean=True)


def stored(box: Outbox, count: int, *, confirm: bool = False) -> list[int]:
    readings = [NewReading("dev", "s", 2 if confirm else 1, 1.8e9 + i, i, None, f"gw/{GW}/dev/s",
                           confirm) for i in range(count)]
    box.commit(readings, [], [], Counter())
    return [row.id for row in box.fetch(0, 10_000)][-count:]


def publisher_on(box: Outbox, *, hold: bool = False) -> tuple[Publisher, RecordingLink]:
    link = RecordingLink()
    pub = Publisher(cast(MqttLink, link), box, cast(Intake, NoIntake()), max_inflight=100,
                    max_payload_bytes=1 << 20, hold_for_confirmation=hold)
    pub.connected(Session(session_present=False, receive_maximum=20, maximum_packet_size=None))
    return pub, link


def commit(pub: Publisher, box: Outbox) -> None:
    """One group commit of what the publisher settled, as the gateway's committer does it."""
    acked, quarantined, held = pub.take_settled()
    box.commit([], acked, quarantined, Counter(), Confirmations(held=held))
    pub.committed(acked, quarantined, held)


def test_a_retried_row_waits_then_goes_ahead_and_a_rejected_one_is_quarantined(
        box: Outbox) -> None:
    retried, rejected, delivered = stored(box, 3)
    pub, link = publisher_on(box)

    async def life() -> None:
        pub._fill_window()
        assert [pub.rows.state(i) for i in (retried, rejected, delivered)] == [RowState.IN_FLIGHT] * 3
        pub._on_publish(1, ReasonCode(PacketTypes.PUBACK, identifier=0x10))
        pub._on_publish(2, ReasonCode(PacketTypes.PUBACK, identifier=0x87))
        pub._on_publish(3, SUCCESS)
        assert pub.rows.counts() == {RowState.RETRY_WAIT: 1, RowState.QUARANTINED: 1,
                                     RowState.ACKED: 1}
        assert pub.take_settled() == ([delivered], [(rejected, "broker rejected: Not authorized")],
                                      [])
        commit(pub, box)
        deadline = time.monotonic() + 10
        while pub.rows.count(RowState.RETRY_WAIT):  # the back-off (0.5 s at first) runs out
            assert time.monotonic() < deadline, "the retry back-off never ran out"
            await asyncio.sleep(0.02)
        assert pub.rows.ids(RowState.RESEND) == [retried]
        stored(box, 1)  # a new row in the live lane: the resend goes first
        pub._fill_window()

    asyncio.run(life())
    assert [mid for mid, _, _ in link.sent] == [1, 2, 3, 4, 5]
    assert link.sent[3][2] == link.sent[0][2]  # the retried row, again, ahead of the new one
    assert pub.rows.counts() == {RowState.IN_FLIGHT: 2}
    assert pub.retries == 1
    assert query(box.path, "SELECT id, reason FROM quarantine") == [
        (rejected, "broker rejected: Not authorized")]
    assert [r.id for r in box.fetch(0, 10)] == [retried, delivered + 1]


def test_held_rows_found_at_a_start_are_not_sent_twice_but_resent_when_overdue(
        box: Outbox) -> None:
    ids = stored(box, 3, confirm=True)
    box.commit([], [], [], Counter(), Confirmations(held=ids[:2]))  # held by an earlier run
    assert [r.held for r in box.fetch(0, 10)] == [True, True, False]
    first_payload = box.fetch_ids([ids[0]])[0].payload

    pub, link = publisher_on(box, hold=True)
    pub._fill_window()  # the backlog after a start: held rows wait for their confirmation
    assert len(link.sent) == 1 and pub.rows.counts() == {RowState.IN_FLIGHT: 1}
    pub._fill_window()  # and again: still not sent
    assert len(link.sent) == 1
    pub._on_publish(1, SUCCESS)
    assert pub.take_settled() == ([], [], [ids[2]])
    commit(pub, box)
    assert len(pub.rows) == 0  # held, and now the store's to know
    assert [r.held for r in box.fetch(0, 10)] == [True, True, True]

    # Both overdue, and in the same commit the consumer's confirmation of the second.
    seq = int(box.fetch_ids([ids[1]])[0].payload.split(b'"seq":')[1].split(b",")[0])
    box.commit([], [], [], Counter(), Confirmations(marks=[(box.epoch, "dev", "s", seq, seq)],
                                                    resend=ids[:2]))
    pub.resend(ids[:2])
    assert pub.rows.ids(RowState.RESEND) == ids[:2]
    pub._fill_window()
    assert len(link.sent) == 2 and link.sent[1][2] == first_payload
    assert pub.rows.counts() == {RowState.IN_FLIGHT: 1}  # the confirmed one is let go
    assert [(r.id, r.held) for r in box.fetch(0, 10)] == [(ids[0], False), (ids[2], True)]
