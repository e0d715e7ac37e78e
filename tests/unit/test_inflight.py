"""The publisher's in-flight window and what an MQTT 5 PUBACK/PUBCOMP reason code means."""

from __future__ import annotations

import pytest

from gateway.core.inflight import AckOutcome, InflightWindow, classify_ack


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (0x00, AckOutcome.DELIVERED),    # Success
        (0x10, AckOutcome.RETRY),        # No matching subscribers: nobody would get it
        (0x80, AckOutcome.QUARANTINE),   # Unspecified error
        (0x83, AckOutcome.QUARANTINE),   # Implementation specific error
        (0x87, AckOutcome.QUARANTINE),   # Not authorized (ACL)
        (0x90, AckOutcome.QUARANTINE),   # Topic Name invalid
        (0x99, AckOutcome.QUARANTINE),   # Payload format invalid
        (0x92, AckOutcome.RETRY),        # Packet Identifier not found
        (0x97, AckOutcome.RETRY),        # Quota exceeded
    ],
    ids=lambda value: f"0x{value:02x}" if isinstance(value, int) else value.value,
)
def test_classify_ack(code: int, outcome: AckOutcome) -> None:
    assert classify_ack(code) is outcome


def test_every_failure_code_is_never_a_delivery() -> None:
    for code in range(0x80, 0x100):
        assert classify_ack(code) is not AckOutcome.DELIVERED, hex(code)
    for code in range(0x80):
        expected = AckOutcome.RETRY if code == 0x10 else AckOutcome.DELIVERED
        assert classify_ack(code) is expected, hex(code)


def test_window_room_add_and_settle() -> None:
    window = InflightWindow(3)
    assert (len(window), window.room) == (0, 3)
    window.add(1, 101)
    window.add(2, 102)
    assert (len(window), window.room) == (2, 1)
    assert sorted(window.rows()) == [101, 102]
    assert window.settle(1) == 101
    assert window.settle(1) is None  # already settled
    assert window.settle(99) is None  # never sent
    assert (len(window), window.room) == (1, 2)
    assert window.rows() == [102]


def test_window_full_has_no_room() -> None:
    window = InflightWindow(2)
    window.add(1, 10)
    window.add(2, 20)
    assert window.room == 0


def test_duplicate_packet_id_raises_and_keeps_the_first_row() -> None:
    window = InflightWindow(5)
    window.add(7, 70)
    with pytest.raises(ValueError, match="7"):
        window.add(7, 71)
    assert window.settle(7) == 70


def test_a_settled_packet_id_may_be_reused() -> None:
    window = InflightWindow(5)
    window.add(7, 70)
    window.settle(7)
    window.add(7, 71)
    assert window.settle(7) == 71


def test_resize_shrinks_below_what_is_in_flight_and_grows_again() -> None:
    window = InflightWindow(10)
    for mid in range(1, 6):
        window.add(mid, mid * 10)
    window.resize(3)  # e.g. the broker's Receive Maximum
    assert (window.capacity, window.room, len(window)) == (3, 0, 5)
    for mid in range(1, 4):
        window.settle(mid)
    assert window.room == 1
    window.resize(20)
    assert window.room == 18


def test_resize_keeps_at_least_one_and_capacity_must_be_positive() -> None:
    window = InflightWindow(4)
    window.resize(0)
    assert (window.capacity, window.room) == (1, 1)
    with pytest.raises(ValueError, match="at least 1"):
        InflightWindow(0)
