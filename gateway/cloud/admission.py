"""What the consumer lets into its database: one message in, a reading or a refusal out.

Pure. The checks run in this order, each before the next costs anything:
the raw payload's size (`too_large`, before any decoding), the envelope
(`decode`: UTF-8, nesting depth, JSON, fields), the names (the gateway's own
config rules: `bad_name`), and the identity the topic names (`topic_mismatch`:
a client may only write readings of the gateway, device and stream its topic
says, which is what a broker ACL such as `pattern write gw/%c/+/+` controls).

A batch (wire format v2, on `{topic_prefix}/{device}/_batch`) is checked the same
way, reading by reading (`admit_all`): its raw size first, then the v2 decoder
(inflating no more than its bound), then each reading's names, and its gateway
and device against the topic's; each reading names its own stream.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

from gateway.core.batch_wire import BATCH_LEVEL, decode_message
from gateway.core.confirmation import CONFIRM_LEVEL
from gateway.core.envelope import Envelope, Undecodable, decode
from gateway.core.presence import STATUS_LEVEL
from gateway.core.topics import GATEWAY_ID, ReadingTopic, segment_problem

EXCERPT_CHARS = 512  # of a refused payload, kept in `rejected_payloads`
_TOPIC_CHARS = 512
RESERVED_LEVELS = (CONFIRM_LEVEL, STATUS_LEVEL, BATCH_LEVEL)  # never a device or a stream


@dataclass(frozen=True, slots=True)
class Refusal:
    """A message that is not stored as a reading: `reason` is a counter name."""

    topic: str
    reason: str
    detail: str
    excerpt: str
    digest: bytes = b""  # of the whole payload: tells redelivered copies from other payloads


def excerpt(payload: bytes | bytearray, limit: int = EXCERPT_CHARS) -> str:
    """The start of a payload as ASCII text (escapes for anything else, NUL included)."""
    text = payload[:limit].decode("utf-8", "backslashreplace")
    return json.dumps(text)[1:-1][:limit]


def clean(text: str) -> str:
    """`text` as it may go into a log line and a database: no NUL, no lone surrogate, no
    line break (each escaped)."""
    return (text.encode("utf-8", "backslashreplace").decode("utf-8")
            .replace("\x00", "\\x00").replace("\n", "\\n").replace("\r", "\\r"))


def _digest(payload: bytes | bytearray) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


def name_problem(env: Envelope) -> str | None:
    """Why the names of a reading break the gateway's config rules, or None."""
    return _names_problem(env.gateway, env.epoch, env.device, env.stream)


@functools.lru_cache(maxsize=4096)  # the names of a stream repeat with each of its readings
def _names_problem(gateway: str, epoch: str, device: str, stream: str) -> str | None:
    if not GATEWAY_ID.fullmatch(gateway):
        return f"gateway {gateway[:64]!r} is not 1-64 letters, digits, '-' or '_'"
    for field, value in (("epoch", epoch), ("device", device), ("stream", stream)):
        problem = segment_problem(value) or _unicode_problem(value)
        if problem is not None:
            return f"{field} {value[:64]!r}{'...' if len(value) > 64 else ''}: {problem}"
    return None


def _unicode_problem(value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    return None


def _oversize(shown: str, payload: bytes | bytearray, max_payload: int) -> Refusal | None:
    if len(payload) > max_payload:
        return Refusal(shown, "too_large", f"{len(payload)} bytes, over max_payload "
                       f"{max_payload}", excerpt(payload, 128), _digest(payload))
    return None


def admit(topic: str, payload: bytes | bytearray, topics: ReadingTopic, max_payload: int
          ) -> Envelope | Refusal:
    """The reading a message carries, or why it is refused."""
    shown = json.dumps(topic[:_TOPIC_CHARS])[1:-1]  # one log line, whatever the topic holds
    oversize = _oversize(shown, payload, max_payload)
    if oversize is not None:
        return oversize
    raw = payload if isinstance(payload, bytes) else bytes(payload)
    return _check(shown, topics.identity(topic), topics.template, decode(raw), raw, b"")


def admit_all(topic: str, payload: bytes | bytearray, topics: ReadingTopic, max_payload: int
              ) -> list[Envelope | Refusal]:
    """The readings a message carries, each admitted or refused: one for a v1 message, one
    per reading (or a single refusal for the whole) for a batch on a `_batch` topic."""
    named = topics.identity(topic)
    if named is None or named[2] != BATCH_LEVEL:
        return [admit(topic, payload, topics, max_payload)]
    shown = json.dumps(topic[:_TOPIC_CHARS])[1:-1]
    oversize = _oversize(shown, payload, max_payload)  # before anything is inflated
    if oversize is not None:
        return [oversize]
    raw = payload if isinstance(payload, bytes) else bytes(payload)
    decoded = decode_message(topic, raw, v1=False)
    # Each refused reading of a batch is its own refusal (kept once per reading).
    return [_check(shown, named, topics.template, item, raw,
                   b"" if len(decoded) == 1 else index.to_bytes(4, "big"))
            for index, item in enumerate(decoded)]


def _check(shown: str, named: tuple[str, str, str] | None, template: str,
           decoded: Envelope | Undecodable, payload: bytes, salt: bytes) -> Envelope | Refusal:
    """A decoded reading's names and identity against the topic's (a batch topic names no
    stream: each reading names its own)."""
    if isinstance(decoded, Undecodable):
        return _refusal(shown, decoded.reason, clean(decoded.detail), payload, salt)
    problem = name_problem(decoded)
    if problem is not None:
        return _refusal(shown, "bad_name", clean(problem), payload, salt)
    carried = (decoded.gateway, decoded.device, decoded.stream)
    if named is not None and named[2] == BATCH_LEVEL:
        if decoded.stream in RESERVED_LEVELS:
            return _refusal(shown, "bad_name", f"stream {decoded.stream!r}: it is reserved",
                            payload, salt)
        named = (named[0], named[1], decoded.stream)
    if named != carried:
        detail = (f"the topic does not match {template}" if named is None else
                  "the topic names gateway={}, device={}, stream={}".format(*named))
        return _refusal(shown, "topic_mismatch", clean(
            f"{detail}; the payload says gateway={carried[0]}, device={carried[1]}, "
            f"stream={carried[2]}"), payload, salt)
    return decoded


def _refusal(shown: str, reason: str, detail: str, payload: bytes, salt: bytes) -> Refusal:
    """A refused reading, its digest of `payload` and `salt` (its place in its batch)."""
    return Refusal(shown, reason, detail, excerpt(payload), _digest(payload + salt))
