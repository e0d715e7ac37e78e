"""The PUBLISH size the publisher checks against the broker's Maximum Packet Size."""

from __future__ import annotations

import pytest

from gateway.core.packet_size import publish_packet_size


def test_small_qos1_packet() -> None:
    # fixed header 1 + length 1 + topic (2 + 3) + packet id 2 + properties 1 + payload 10
    assert publish_packet_size("a/b", 10, 1) == 20


def test_qos0_has_no_packet_id() -> None:
    assert publish_packet_size("a/b", 10, 0) == 18


def test_topic_counts_in_utf8_bytes() -> None:
    assert publish_packet_size("gw/°C", 0, 0) == publish_packet_size("gw/xyz", 0, 0)


@pytest.mark.parametrize(("payload", "size"), [
    (127 - 8, 129),      # remaining length 127: one length byte
    (128 - 8, 131),      # remaining length 128: two length bytes
    (16383 - 8, 16386),  # the last two-byte length
    (16384 - 8, 16388),  # three length bytes
])
def test_length_field_grows_at_the_varint_boundaries(payload: int, size: int) -> None:
    # remaining length = topic (2 + 3) + packet id 2 + properties 1 + payload = 8 + payload
    assert publish_packet_size("t/x", payload, 1) == size
