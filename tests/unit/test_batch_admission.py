"""The consumer's admission of v2 batches (pure): the size before inflating, the v2
decoder, each reading's names and identity against the topic, one inbox entry each."""

from __future__ import annotations

import json
import zlib
from typing import Any

from gateway.cloud.admission import Refusal, admit_all
from gateway.cloud.inbox import Ack, Inbox
from gateway.core.batch_wire import ZLIB_MARK, batch_topic, encode_batch
from gateway.core.envelope import MAX_DEPTH, Envelope, encode
from gateway.core.topics import READING_TOPIC_DEFAULT, ReadingTopic

DEFAULT = ReadingTopic.compile(READING_TOPIC_DEFAULT)
TOPIC = batch_topic("gw/gw-1", "climate")
LIMIT = 256 * 1024


def env(seq: int = 1, stream: str = "temperature", **fields: Any) -> Envelope:
    base: dict[str, Any] = {"gateway": "gw-1", "epoch": "20261204T020000Z-0a1b2c3d",
                            "device": "climate", "stream": stream, "seq": seq,
                            "ts": 1_796_000_000.0, "value": 21.5, "unit": "°C"}
    base.update(fields)
    return Envelope(**base)


def body(readings: list[Envelope], **head: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(encode_batch(readings))
    found.update(head)
    return found


def reasons(items: list[Envelope | Refusal]) -> list[str]:
    return [item.reason if isinstance(item, Refusal) else "ok" for item in items]


def test_each_reading_of_a_batch_is_admitted_under_its_own_stream() -> None:
    readings = [env(1), env(1, "humidity", value=48.2, unit="%"), env(2)]
    for compression in ("none", "zlib"):
        assert admit_all(TOPIC, encode_batch(readings, compression), DEFAULT, LIMIT) == readings


def test_a_v1_message_is_admitted_as_before() -> None:
    assert admit_all("gw/gw-1/climate/temperature", encode(env()), DEFAULT, LIMIT) == [env()]
    assert reasons(admit_all("gw/gw-1/climate/humidity", encode(env()), DEFAULT, LIMIT)) == \
        ["topic_mismatch"]


def test_the_size_is_checked_before_anything_is_inflated() -> None:
    bomb = ZLIB_MARK + zlib.compress(b" " * (64 * 1024 * 1024))  # 64 MiB of spaces
    assert len(bomb) < LIMIT
    assert reasons(admit_all(TOPIC, bomb, DEFAULT, len(bomb) - 1)) == ["too_large"]
    assert reasons(admit_all(TOPIC, bomb, DEFAULT, LIMIT)) == ["too_large"]  # the inflate bound


def test_a_batch_of_another_gateway_than_its_topic_names_is_refused_per_reading() -> None:
    readings = [env(1, gateway="gw-2"), env(2, gateway="gw-2")]
    found = admit_all(TOPIC, encode_batch(readings), DEFAULT, LIMIT)
    assert reasons(found) == ["topic_mismatch", "topic_mismatch"]
    assert all(isinstance(r, Refusal) and "gateway=gw-1" in r.detail for r in found)


def test_a_batch_of_another_device_than_its_topic_names_is_refused_whole() -> None:
    payload = encode_batch([env(1, device="pump"), env(2, device="pump")])
    assert reasons(admit_all(TOPIC, payload, DEFAULT, LIMIT)) == ["bad_batch"]


def test_each_reading_names_its_own_stream_under_the_name_rules() -> None:
    payload = json.dumps(body([env(1), env(2, "bad/stream"), env(3, "_confirm"),
                               env(4, "")])).encode()
    assert reasons(admit_all(TOPIC, payload, DEFAULT, LIMIT)) == [
        "ok", "bad_name", "bad_name", "bad_field"]


def test_a_v1_payload_on_a_batch_topic_is_refused() -> None:
    assert reasons(admit_all(TOPIC, encode(env()), DEFAULT, LIMIT)) == ["unknown_version"]


def test_batch_readings_carry_the_optional_fields_of_v1() -> None:
    readings = [env(5, ts_quality="unsynced", dropped=(2, 4)), env(6)]
    assert admit_all(TOPIC, encode_batch(readings, "zlib"), DEFAULT, LIMIT) == readings


def test_a_value_may_nest_as_deep_in_a_batch_as_in_v1() -> None:
    deepest: Any = 1
    for _ in range(MAX_DEPTH - 1):  # with the envelope: MAX_DEPTH levels in v1
        deepest = [deepest]
    assert reasons(admit_all(TOPIC, encode_batch([env(value=deepest)]), DEFAULT, LIMIT)) == ["ok"]
    too_deep = body([env()])
    too_deep["readings"][0]["value"] = [deepest]
    assert reasons(admit_all(TOPIC, json.dumps(too_deep).encode(), DEFAULT, LIMIT)) == \
        ["too_deep"]


def test_every_reading_of_a_batch_goes_into_the_inbox_and_the_message_is_acked_once() -> None:
    payload = json.dumps(body([env(1), env(2, "bad/stream"), env(3, "bad/other"),
                               env(1)])).encode()
    inbox = Inbox()
    ack: Ack | None = Ack(7, 1, 1)
    for item in admit_all(TOPIC, payload, DEFAULT, LIMIT):
        inbox.add(ack, TOPIC, item)
        ack = None
    assert [e.seq for e in inbox.envelopes()] == [1]  # the second copy of seq 1 held once
    assert sorted(inbox.reject_counts().elements()) == ["bad_name", "bad_name"]  # two, not one
    assert [a.mid for a in inbox.acks(1)] == [7]
    assert inbox.topic_of(env(1)) == TOPIC  # its confirmation goes to the batch's prefix
