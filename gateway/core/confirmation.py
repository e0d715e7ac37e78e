"""End-to-end confirmation: what the consumer has committed, told back to the gateway.

Pure. After each commit the consumer publishes, per stream and epoch, the
ranges of seqs it now holds in `readings` (`Mark(epoch, device, stream,
first, last)`) to `{topic_prefix}/_confirm`, one message per gateway for the
whole batch; a duplicate it receives is confirmed again, so a lost
confirmation heals by itself. Ranges rather than one contiguous high-water
mark, so that a seq that never arrives (a quarantined row, a salvage loss)
cannot hold back the confirmation of every seq after it.

The gateway trusts a range only for an (epoch, device, stream) it knows and
seqs it has handed out (`trusted_range`); anything else is ignored and
counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.core.envelope import MAX_SEQ

CONFIRM_LEVEL = "_confirm"
CONFIRM_VERSION = 1
# Bounds of one confirmation message, checked before it is parsed: a genuine one stays
# well within them (the consumer splits larger batches, `encode_confirmations`), and a
# hostile one is refused in microseconds instead of holding the gateway's event loop.
MAX_CONFIRM_BYTES = 64 * 1024
MAX_CONFIRM_RANGES = 1000
# The gateway receives only confirmations: the largest packet it lets the broker send it
# (MQTT 5 Maximum Packet Size). Larger ones the broker drops; between the two bounds
# they reach the gateway and are refused and counted.
CONFIRM_PACKET_LIMIT = 16 * MAX_CONFIRM_BYTES


@dataclass(frozen=True, slots=True)
class Mark:
    """The consumer holds seqs `first` to `last` of a stream in `epoch`."""

    epoch: str
    device: str
    stream: str
    first: int
    last: int


def confirm_topic(prefix: str) -> str:
    """Where confirmations for the gateway publishing under `prefix` go."""
    return f"{prefix}/{CONFIRM_LEVEL}"


_CONFIRM_SUFFIX = "/" + CONFIRM_LEVEL


def prefix_of(topic: str) -> str | None:
    """The topic prefix of a reading's topic `{prefix}/{device}/{stream}`."""
    parts = topic.rsplit("/", 2)
    return parts[0] if len(parts) == 3 and parts[0] else None


def is_confirm_topic(topic: str) -> bool:
    """True for a confirmation topic (which a consumer subscribed to `gw/#` also sees)."""
    return topic.endswith(_CONFIRM_SUFFIX)


def ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged runs of consecutive seqs: [1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Why a payload is not a confirmation: `reason` is the counter it is ignored under."""

    reason: str
    detail: str


def encode_confirmations(gateway: str, marks: list[Mark]) -> list[bytes]:
    """The payloads confirming `marks`, each within MAX_CONFIRM_BYTES and MAX_CONFIRM_RANGES."""
    envelope = len(encode_marks(gateway, []))
    payloads: list[bytes] = []
    chunk: list[Mark] = []
    size = envelope
    for mark in marks:
        extra = len(encode_marks("", [mark])) - len(encode_marks("", [])) + 1  # and a comma
        if chunk and (len(chunk) >= MAX_CONFIRM_RANGES or size + extra > MAX_CONFIRM_BYTES):
            payloads.append(encode_marks(gateway, chunk))
            chunk, size = [], envelope
        chunk.append(mark)
        size += extra
    if chunk:
        payloads.append(encode_marks(gateway, chunk))
    return payloads


def encode_marks(gateway: str, marks: Iterable[Mark]) -> bytes:
    """The payload of one confirmation message."""
    body = {
        "v": CONFIRM_VERSION,
        "gateway": gateway,
        "marks": [[m.epoch, m.device, m.stream, m.first, m.last] for m in marks],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _seq(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SEQ


def decode_marks(payload: bytes) -> tuple[str, list[Mark]] | Undecodable:
    """(gateway, marks), or why the payload is not a confirmation (its size first)."""
    if len(payload) > MAX_CONFIRM_BYTES:
        return Undecodable("confirm_too_large",
                           f"{len(payload)} bytes, at most {MAX_CONFIRM_BYTES} are read")
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return Undecodable("confirm_undecodable", "not JSON")
    if not isinstance(body, dict) or body.get("v") != CONFIRM_VERSION:
        return Undecodable("confirm_undecodable", "not a version 1 confirmation")
    gateway, raw = body.get("gateway"), body.get("marks")
    if not isinstance(gateway, str) or not isinstance(raw, list):
        return Undecodable("confirm_undecodable", "missing gateway or marks")
    if len(raw) > MAX_CONFIRM_RANGES:
        return Undecodable("confirm_too_many_ranges",
                           f"{len(raw)} ranges, at most {MAX_CONFIRM_RANGES} are taken")
    marks = []
    for item in raw:
        if (not isinstance(item, list) or len(item) != 5
                or not all(isinstance(x, str) and x for x in item[:3])
                or not _seq(item[3]) or not _seq(item[4]) or item[3] > item[4]):
            return Undecodable("confirm_undecodable",
                               "a mark is not [epoch, device, stream, first, last]")
        marks.append(Mark(item[0], item[1], item[2], item[3], item[4]))
    return gateway, marks


def trusted_range(mark: Mark, last_issued: int | None, current_epoch: bool
                  ) -> tuple[int, int] | str:
    """The seqs of `mark` the gateway may delete, or why it must ignore the mark.

    `last_issued` is the last seq the gateway handed out in the mark's
    (epoch, device, stream), None when it knows no such stream. In the
    current epoch a seq beyond it is a forgery. In an earlier epoch a power
    cut may have rolled the counter back below seqs that went out, so the
    range is clipped to it instead: rows above it were rolled back too.
    """
    if last_issued is None:
        return "confirm_unknown_stream"
    if mark.last <= last_issued:
        return mark.first, mark.last
    if current_epoch or mark.first > last_issued:
        return "confirm_future_seq"
    return mark.first, last_issued
