"""End-to-end confirmation: what the consumer has committed, told back to the gateway.

Pure. The consumer keeps, per stream, a contiguous high-water mark (`Marks`):
every seq at or below it is stored in `readings`. After a commit it publishes
the marks that moved to `{topic_prefix}/_confirm`, one message per gateway
for the whole batch. The gateway trusts a mark only for an epoch it knows and
a seq it has handed out (`check_mark`); anything else is ignored and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.envelope import MAX_SEQ

CONFIRM_LEVEL = "_confirm"
CONFIRM_VERSION = 1

MarkKey = tuple[str, str, str, str]  # (gateway, epoch, device, stream)


@dataclass(frozen=True, slots=True)
class Mark:
    """All readings of a stream up to `seq` (in `epoch`) are committed by the consumer."""

    epoch: str
    device: str
    stream: str
    seq: int


def confirm_topic(prefix: str) -> str:
    """Where confirmations for the gateway publishing under `prefix` go."""
    return f"{prefix}/{CONFIRM_LEVEL}"


def prefix_of(topic: str) -> str | None:
    """The topic prefix of a reading's topic `{prefix}/{device}/{stream}`."""
    parts = topic.rsplit("/", 2)
    return parts[0] if len(parts) == 3 and parts[0] else None


def is_confirm_topic(topic: str) -> bool:
    """True for a confirmation topic (which a consumer subscribed to `gw/#` also sees)."""
    return topic.endswith("/" + CONFIRM_LEVEL)


def encode_marks(gateway: str, marks: Iterable[Mark]) -> bytes:
    """The payload of one confirmation message."""
    body = {
        "v": CONFIRM_VERSION,
        "gateway": gateway,
        "marks": [[m.epoch, m.device, m.stream, m.seq] for m in marks],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_marks(payload: bytes) -> tuple[str, list[Mark]] | str:
    """(gateway, marks), or why the payload is not a confirmation."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(body, dict) or body.get("v") != CONFIRM_VERSION:
        return "not a version 1 confirmation"
    gateway, raw = body.get("gateway"), body.get("marks")
    if not isinstance(gateway, str) or not isinstance(raw, list):
        return "missing gateway or marks"
    marks = []
    for item in raw:
        if (not isinstance(item, list) or len(item) != 4
                or not all(isinstance(x, str) and x for x in item[:3])
                or isinstance(item[3], bool) or not isinstance(item[3], int)
                or not 1 <= item[3] <= MAX_SEQ):
            return "a mark is not [epoch, device, stream, seq]"
        marks.append(Mark(item[0], item[1], item[2], item[3]))
    return gateway, marks


def check_mark(mark: Mark, last_issued: int | None) -> str | None:
    """Why the gateway must not act on `mark`, or None.

    `last_issued` is the last seq the gateway handed out in the mark's
    (epoch, device, stream), or None when it knows no such stream.
    """
    last = last_issued
    if last is None:
        return "confirm_unknown_stream"
    if mark.seq > last:
        return "confirm_future_seq"
    return None


class Marks:
    """Contiguous high-water marks of the streams a consumer has seen."""

    def __init__(self) -> None:
        self._mark: dict[MarkKey, int] = {}
        self._above: dict[MarkKey, set[int]] = {}

    def known(self, key: MarkKey) -> bool:
        """True once the mark of `key` has been set or seeded."""
        return key in self._mark

    def seed(self, key: MarkKey, mark: int) -> None:
        """Start a stream from what the database already holds (all seqs <= mark)."""
        self._mark[key] = mark
        self._above[key] = set()

    def add(self, key: MarkKey, seq: int) -> None:
        """Record that `seq` is stored; the mark moves over every contiguous seq."""
        mark = self._mark.setdefault(key, 0)
        above = self._above.setdefault(key, set())
        if seq <= mark:
            return
        above.add(seq)
        while mark + 1 in above:
            mark += 1
            above.discard(mark)
        self._mark[key] = mark

    def mark(self, key: MarkKey) -> int:
        """The mark of a stream (0: nothing contiguous from seq 1 yet)."""
        return self._mark.get(key, 0)
