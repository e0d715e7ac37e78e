"""Wire format v2: round trips, every rejection reason, the bounds."""

from __future__ import annotations

import json
import zlib

import pytest

from gateway.core.batch_wire import (
    MAX_BATCH_READINGS,
    ZLIB_MARK,
    batch_topic,
    compress,
    decode_message,
    encode_batch,
    encode_text,
    inflate,
    item_of_v1,
    join_items,
    topic_device,
)
from gateway.core.envelope import Envelope, Undecodable, decode, encode

TOPIC = batch_topic("gw/g1", "dev")


def _readings(count: int = 3, device: str = "dev") -> list[Envelope]:
    return [Envelope("g1", "e1", device, f"s{i % 2}", i, 1.7e9 + i / 8, {"t": i} if i % 3 else i,
                     "C" if i % 2 else None, confirm=bool(i % 2)) for i in range(1, count + 1)]


def _reasons(decoded: list[Envelope | Undecodable]) -> list[str]:
    return [d.reason if isinstance(d, Undecodable) else "ok" for d in decoded]


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_round_trip_keeps_every_reading_identity(compression: str) -> None:
    readings = _readings(50)
    payload = encode_batch(readings, compression)
    assert (payload[:1] == ZLIB_MARK) == (compression == "zlib")
    assert decode_message(TOPIC, payload) == readings


def test_v1_payloads_decode_as_before() -> None:
    env = _readings(1)[0]
    assert decode_message("gw/g1/dev/s1", encode(env)) == [env]
    assert decode_message("gw/g1/dev/s1", b"[]") == [decode(b"[]")]


def test_a_v1_only_decoder_refuses_v2_with_a_counted_reason() -> None:
    text = encode_batch(_readings(), "none")
    packed = encode_batch(_readings(), "zlib")
    assert isinstance(v1 := decode(text), Undecodable) and v1.reason == "unknown_version"
    assert isinstance(v1 := decode(packed), Undecodable) and v1.reason == "invalid_utf8"


def test_the_example_of_the_contract_decodes() -> None:
    body = {"v": 2, "gateway": "g1", "epoch": "e1", "device": "dev", "readings": [
        {"stream": "temp", "seq": 41, "ts": "2026-11-26T21:00:00.125Z", "value": 21.5, "unit": "C"},
        {"stream": "temp", "seq": 42, "ts": "2026-11-26T21:00:00.625Z", "value": 21.6, "unit": "C",
         "confirm": True}]}
    decoded = decode_message(TOPIC, json.dumps(body).encode())
    assert [(e.stream, e.seq, e.confirm) for e in decoded if isinstance(e, Envelope)] == \
        [("temp", 41, False), ("temp", 42, True)]


@pytest.mark.parametrize(("change", "reason"), [
    (lambda b: b.update(device="other"), "bad_batch"),
    (lambda b: b.pop("device"), "bad_batch"),
    (lambda b: b.update(gateway=""), "bad_batch"),
    (lambda b: b.update(epoch=7), "bad_batch"),
    (lambda b: b.update(readings=[]), "bad_batch"),
    (lambda b: b.update(readings={"stream": "s"}), "bad_batch"),
    (lambda b: b.update(readings=b["readings"] * (MAX_BATCH_READINGS + 1)), "bad_batch"),
    (lambda b: b.update(v=3), "unknown_version"),
    (lambda b: b.update(v="2"), "bad_field"),
])
def test_a_wrong_batch_is_refused_whole(change: object, reason: str) -> None:
    body = json.loads(encode_text(_readings(2)))
    change(body)  # type: ignore[operator]
    assert _reasons(decode_message(TOPIC, json.dumps(body).encode())) == [reason]


def test_a_batch_must_come_on_its_device_batch_topic() -> None:
    payload = encode_batch(_readings(2))
    assert _reasons(decode_message("gw/g1/dev/s1", payload)) == ["bad_batch"]
    assert _reasons(decode_message("gw/g1/other/_batch", payload)) == ["bad_batch"]
    assert topic_device(TOPIC) == "dev" and topic_device("_batch") is None


@pytest.mark.parametrize("bad", [
    {"seq": 0}, {"seq": True}, {"ts": "yesterday"}, {"stream": ""}, {"unit": 5},
    {"confirm": "yes"}, {"value": None, "drop": "value"}])
def test_one_bad_reading_is_refused_alone(bad: dict[str, object]) -> None:
    body = json.loads(encode_text(_readings(3)))
    item = body["readings"][1]
    if bad.pop("drop", None):
        del item["value"]
    else:
        item.update(bad)
    decoded = decode_message(TOPIC, json.dumps(body).encode())
    assert _reasons(decoded) == ["ok", "bad_field", "ok"]


def test_a_reading_that_is_not_an_object_is_refused_alone() -> None:
    body = json.loads(encode_text(_readings(2)))
    body["readings"].append(5)
    assert _reasons(decode_message(TOPIC, json.dumps(body).encode())) == ["ok", "ok", "bad_field"]


def test_compressed_payload_rejections() -> None:
    text = encode_text(_readings(5))
    packed = compress(text)
    assert _reasons(decode_message(TOPIC, ZLIB_MARK + b"not zlib")) == ["bad_compression"]
    assert _reasons(decode_message(TOPIC, packed[:-4])) == ["bad_compression"]
    assert _reasons(decode_message(TOPIC, packed + b"tail")) == ["bad_compression"]
    assert _reasons(decode_message(TOPIC, ZLIB_MARK + zlib.compress(b"\xfe\xff"))) == \
        ["invalid_utf8"]
    assert _reasons(decode_message(TOPIC, ZLIB_MARK + zlib.compress(b"{"))) == ["bad_json"]
    v1 = ZLIB_MARK + zlib.compress(encode(_readings(1)[0]))
    assert _reasons(decode_message(TOPIC, v1)) == ["unknown_version"]  # v1 is never compressed


def test_inflating_stops_at_the_limit() -> None:
    bomb = ZLIB_MARK + zlib.compress(b" " * 50_000_000, 9)  # ~50 kB that inflate to 50 MB
    assert len(bomb) < 100_000
    refused = inflate(bomb)
    assert isinstance(refused, Undecodable) and refused.reason == "too_large"
    assert _reasons(decode_message(TOPIC, bomb)) == ["too_large"]
    small = inflate(compress(b"x" * 1000), limit=999)
    assert isinstance(small, Undecodable) and small.reason == "too_large"
    assert inflate(compress(b"x" * 1000), limit=1000) == b"x" * 1000


def test_encode_refuses_what_is_not_one_batch() -> None:
    with pytest.raises(ValueError, match="1 to"):
        encode_text([])
    with pytest.raises(ValueError, match="1 to"):
        encode_text(_readings(1) * (MAX_BATCH_READINGS + 1))
    with pytest.raises(ValueError, match="one gateway, epoch and device"):
        encode_text(_readings(1) + _readings(1, device="other"))


@pytest.mark.parametrize("env", [
    Envelope("g1", "e1", "dev", "s", 1, 1.7e9, 1.5, None),
    Envelope("g-1_x", "20261204T020340Z-4985c81c", 'd"ev', "s,\"stream\":", 9, 0.0,
             {"stream": "x", "list": [1, "é"]}, "°C", confirm=True),
    Envelope("g1", "e1", "dév", "ström", 2**63 - 1, 1.7e9, 'a\\"b', "%"),
])
def test_the_reading_cut_from_a_v1_payload_is_its_v2_object(env: Envelope) -> None:
    found = item_of_v1(encode(env))
    assert found is not None
    gateway, epoch, item = found
    assert (gateway, epoch) == (env.gateway, env.epoch)
    text = join_items(gateway, epoch, env.device, [item, item])
    assert text == encode_text([env, env])
    assert decode_message(batch_topic("gw", env.device), text) == [env, env]


@pytest.mark.parametrize("payload", [
    b"", b"{}", b'{"v":2,"gateway":"g","epoch":"e","device":"d","stream":"s"}',
    b'{"v":1,"gateway":"g","device":"d","stream":"s"}', b'{"v":1,"gateway":"g\xff","epoch":"e",'
    b'"device":"d","stream":"s","seq":1}', b"not json"])
def test_anything_but_a_v1_payload_of_the_encoder_is_not_cut(payload: bytes) -> None:
    assert item_of_v1(payload) is None
