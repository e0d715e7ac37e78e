"""Wire format v2: several readings of one device in one message (docs/contracts.md,
"Wire format v2").

Pure, stdlib only. A v2 payload is a JSON object
`{"v": 2, "gateway", "epoch", "device", "readings": [{stream, seq, ts, value, unit?,
confirm?, ts_quality?, dropped?}, ...]}` on the topic `{topic_prefix}/{device}/_batch`,
either as UTF-8 JSON text or compressed: the byte 0xFF (which never occurs in UTF-8, so
a v1-only consumer refuses it as `invalid_utf8`) followed by a zlib stream of that text.
Each reading keeps its own identity; the decoder gives one `Envelope` or `Undecodable`
per reading, so one bad reading is rejected alone.

Bounds, checked before the work they limit: a compressed payload is inflated at most to
`MAX_INFLATED_BYTES` (checked while inflating), and a batch holds at most
`MAX_BATCH_READINGS` readings.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from gateway.core.envelope import (
    MAX_DEPTH,
    WIRE_VERSION,
    Envelope,
    Undecodable,
    check_reading,
    decode,
    format_ts,
    parse_object,
    version_of,
)

BATCH_VERSION = 2
BATCH_LEVEL = "_batch"  # the last topic level of a batch: {topic_prefix}/{device}/_batch
ZLIB_MARK = b"\xff"  # first byte of a compressed payload; never the first byte of UTF-8 text
MAX_BATCH_READINGS = 1000
MAX_INFLATED_BYTES = 8 * 1024 * 1024
COMPRESSIONS = ("none", "zlib")

Decoded = list[Envelope | Undecodable]


def batch_topic(prefix: str, device: str) -> str:
    """Where the batches of a device go."""
    return f"{prefix}/{device}/{BATCH_LEVEL}"


def _reading(env: Envelope) -> dict[str, Any]:
    item: dict[str, Any] = {"stream": env.stream, "seq": env.seq, "ts": format_ts(env.ts),
                            "value": env.value}
    if env.unit is not None:
        item["unit"] = env.unit
    if env.confirm:
        item["confirm"] = True
    if env.ts_quality is not None:
        item["ts_quality"] = env.ts_quality
    if env.dropped is not None:
        item["dropped"] = list(env.dropped)
    return item


def encode_text(readings: list[Envelope]) -> bytes:
    """The v2 JSON text of readings sharing one gateway, epoch and device.

    Raises:
        ValueError: no readings, too many, or readings of different batches.
    """
    if not readings:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_READINGS} readings, not 0")
    first = readings[0]
    head = (first.gateway, first.epoch, first.device)
    if any((r.gateway, r.epoch, r.device) != head for r in readings):
        raise ValueError("a batch holds readings of one gateway, epoch and device")
    return encode_items(first.gateway, first.epoch, first.device, [_reading(r) for r in readings])


def encode_items(gateway: str, epoch: str, device: str, items: list[dict[str, Any]]) -> bytes:
    """The v2 JSON text of readings given as their v2 objects.

    Raises:
        ValueError: no readings or too many.
    """
    return join_items(gateway, epoch, device, [
        json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        for item in items])


def join_items(gateway: str, epoch: str, device: str, items: list[bytes]) -> bytes:
    """The v2 JSON text of readings given as the JSON text of their v2 objects
    (see `item_of_v1`), which is taken as it is.

    Raises:
        ValueError: no readings or too many.
    """
    if not items or len(items) > MAX_BATCH_READINGS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_READINGS} readings, not {len(items)}")
    head = json.dumps({"v": BATCH_VERSION, "gateway": gateway, "epoch": epoch,
                       "device": device}, ensure_ascii=False, separators=(",", ":")).encode()
    return b"".join((head[:-1], b',"readings":[', b",".join(items), b"]}"))


_STREAM_KEY = b',"stream":'
_EPOCH_KEY = b'"epoch":"'
_V1_START = b'{"v":1,"gateway":"'


def item_of_v1(payload: bytes) -> tuple[str, str, bytes] | None:
    """The gateway, epoch and v2 reading object (JSON text) of a v1 payload as
    `gateway.core.envelope.encode` writes it (an outbox row's), or None for any other.

    `encode` writes the keys v, gateway, epoch, device, stream, seq, ts, value,
    unit, confirm in that order, and a JSON string holds no unescaped quote, so
    the first `,"stream":` starts the reading's own fields: they are cut out as
    they are, with no parsing.
    """
    stream_at = payload.find(_STREAM_KEY)
    epoch_at = payload.find(_EPOCH_KEY)
    if not payload.startswith(_V1_START) or stream_at < 0 or not 0 < epoch_at < stream_at:
        return None
    gateway_end = payload.find(b'"', len(_V1_START))
    epoch_start = epoch_at + len(_EPOCH_KEY)
    epoch_end = payload.find(b'"', epoch_start)
    if not len(_V1_START) < gateway_end < epoch_at or not epoch_start < epoch_end < stream_at:
        return None
    try:
        gateway = payload[len(_V1_START):gateway_end].decode()
        epoch = payload[epoch_start:epoch_end].decode()
    except UnicodeDecodeError:
        return None
    return gateway, epoch, b"{" + payload[stream_at + 1:]


def compress(text: bytes) -> bytes:
    """The compressed form of a v2 text: the mark, then zlib (its default level, 6: level 9
    saves some 7% more of a batch's bytes for half again the CPU)."""
    return ZLIB_MARK + zlib.compress(text, 6)


def encode_batch(readings: list[Envelope], compression: str = "none") -> bytes:
    """A v2 payload; see `encode_text`."""
    text = encode_text(readings)
    return compress(text) if compression == "zlib" else text


def inflate(payload: bytes, limit: int = MAX_INFLATED_BYTES) -> bytes | Undecodable:
    """The text of a compressed payload (after the mark), inflating no more than `limit`."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(payload[1:], limit + 1)
    except zlib.error as exc:
        return Undecodable("bad_compression", f"not a zlib stream ({exc})")
    if len(text) > limit or inflater.unconsumed_tail:
        return Undecodable("too_large", f"inflates to more than {limit} bytes")
    if not inflater.eof:
        return Undecodable("bad_compression", "the zlib stream is truncated")
    if inflater.unused_data:
        return Undecodable("bad_compression", "bytes after the end of the zlib stream")
    return text


def topic_device(topic: str) -> str | None:
    """The device of a batch topic `{prefix}/{device}/_batch`, or None for another topic."""
    parts = topic.rsplit("/", 2)
    if len(parts) == 3 and parts[0] and parts[2] == BATCH_LEVEL and parts[1]:
        return parts[1]
    return None


def decode_message(topic: str, payload: bytes, *, v1: bool = True) -> Decoded:
    """The readings of one message of either wire version (v2 only when not `v1`), each
    decoded or refused.

    A v1 payload gives one item. A v2 batch gives one item per reading; a batch
    whose envelope is wrong (not on its device's batch topic, no readings list,
    too many readings) gives a single `Undecodable`.
    """
    if payload[:1] == ZLIB_MARK:
        text = inflate(payload)
        if isinstance(text, Undecodable):
            return [text]
        payload = text
        compressed = True
    else:
        compressed = False
    # A batch nests its readings two levels deeper than v1 (the list, the reading's object).
    body = parse_object(payload, MAX_DEPTH + 2)
    if isinstance(body, Undecodable):
        return [body]
    version = version_of(body)
    if isinstance(version, Undecodable):
        return [version]
    if version == WIRE_VERSION and not compressed and v1:
        return [decode(payload)]  # v1's own bound on nesting
    if version == WIRE_VERSION and not v1:
        return [Undecodable("unknown_version", f"v=1 on a {BATCH_LEVEL} topic (batches are v=2)")]
    if version != BATCH_VERSION:
        return [Undecodable("unknown_version",
                            f"wire version v={version} (this consumer reads v=1 and v=2)")]
    return _decode_batch(topic, body)


def _decode_batch(topic: str, body: dict[str, Any]) -> Decoded:
    device = topic_device(topic)
    if device is None:
        return [Undecodable("bad_batch", f"a v2 batch must come on {{prefix}}/{{device}}/"
                            f"{BATCH_LEVEL}, not on {topic!r:.80}")]
    if body.get("device") != device:
        return [Undecodable("bad_batch", f"the batch names device {body.get('device')!r:.40}, "
                            f"its topic {device!r}")]
    for key in ("gateway", "epoch"):
        if not isinstance(body.get(key), str) or not body[key]:
            return [Undecodable("bad_batch", f"'{key}' must be a non-empty string")]
    items = body.get("readings")
    if not isinstance(items, list) or not items:
        return [Undecodable("bad_batch", "'readings' must be a non-empty list")]
    if len(items) > MAX_BATCH_READINGS:
        return [Undecodable("bad_batch", f"{len(items)} readings in one batch (at most "
                            f"{MAX_BATCH_READINGS})")]
    return [check_reading(item, body) if isinstance(item, dict)
            else Undecodable("bad_field", "a batch's reading must be a JSON object")
            for item in items]
