"""The size of an MQTT 5 PUBLISH packet, to check it against the broker's limit.

A packet over the broker's Maximum Packet Size makes the broker drop the
connection, and paho would resend it after every reconnect: the stream would
stall for good. So the publisher checks the whole packet, topic included,
before sending.
"""

from __future__ import annotations


def _varint_length(value: int) -> int:
    """Bytes of an MQTT variable byte integer."""
    length = 1
    while value >= 128:
        value //= 128
        length += 1
    return length


def publish_packet_size(topic: str, payload_length: int, qos: int) -> int:
    """Bytes on the wire of a PUBLISH with no properties (as the publisher sends it)."""
    remaining = 2 + len(topic.encode()) + (2 if qos > 0 else 0) + 1 + payload_length
    return 1 + _varint_length(remaining) + remaining
