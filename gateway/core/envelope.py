"""The wire format of one reading (docs/contracts.md, "Wire format v1"), encoded and decoded.

Pure: bytes in, `Envelope` or `Undecodable` out. The consumer rejects an
unknown major version `v` with a counted reason instead of crashing.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.core.strict_json import loads_strict, nesting_exceeds

JsonValue = Any  # None | bool | int | float | str | list[JsonValue] | dict[str, JsonValue]

WIRE_VERSION = 1
MAX_SEQ = 2**63 - 1
MAX_DEPTH = 32  # nesting of arrays and objects in a payload, the envelope included
MAX_TS_QUALITY = 32  # characters of the optional `ts_quality`
_REQUIRED_TEXT = ("gateway", "epoch", "device", "stream")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One reading with its identity `(gateway, epoch, device, stream, seq)`."""

    gateway: str
    epoch: str
    device: str
    stream: str
    seq: int
    ts: float
    value: Any
    unit: str | None
    confirm: bool = False  # the gateway waits for the consumer's end-to-end confirmation
    ts_quality: str | None = None  # "unsynced": `ts` is from a clock not yet synchronised
    # Seqs (first, last) below `seq` of this stream that the gateway dropped on purpose.
    dropped: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Why a payload is not a reading: `reason` is a counter name."""

    reason: str
    detail: str


def format_ts(ts: float) -> str:
    """Unix seconds -> RFC 3339 UTC with milliseconds, e.g. `2026-11-26T21:00:00.123Z`.

    The same text as `datetime.fromtimestamp(ts, UTC)` gives (microseconds rounded half
    to even, then truncated to milliseconds); the date and time of day are formatted once
    per second, as readings mostly come many to a second.
    """
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    second = int(whole)
    if us >= 1_000_000:
        second, us = second + 1, us - 1_000_000
    elif us < 0:
        second, us = second - 1, us + 1_000_000
    return f"{_second_text(second)}{us // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second_text(second: int) -> str:
    """`2026-11-26T21:00:00.` for a whole Unix second."""
    moment = datetime.fromtimestamp(second, UTC)
    # Not strftime alone: its %Y does not pad years before 1000 to the four digits RFC 3339 needs.
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.")


_YEAR_10000 = 253_402_300_800  # Unix seconds of 10000-01-01T00:00:00Z
_CANONICAL_TS = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?Z")


def parse_ts(text: str) -> float | None:
    """RFC 3339 text -> Unix seconds, or None when it is not a timestamp."""
    canonical = _CANONICAL_TS.fullmatch(text)
    if canonical is not None:  # what format_ts writes: the second parsed once
        whole = _whole_second(canonical.group(1))
        if whole is None:
            return None
        ts = (whole * 1_000_000 + int((canonical.group(2) or "").ljust(6, "0"))) / 1_000_000
        return ts if ts < _YEAR_10000 else None  # format_ts could not write it back
    return _parse_any_ts(text)


@functools.lru_cache(maxsize=64)
def _whole_second(text: str) -> int | None:
    """`YYYY-MM-DDTHH:MM:SS` (UTC) -> whole Unix seconds, or None when it is no time."""
    ts = _parse_any_ts(text + "Z")
    return None if ts is None else int(ts)


def _parse_any_ts(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            return None
        ts = moment.timestamp()
        # A time whose UTC date leaves years 1-9999 cannot be written back by format_ts.
        datetime.fromtimestamp(ts, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return ts


def encode(envelope: Envelope) -> bytes:
    """The UTF-8 JSON payload of a reading."""
    body: dict[str, Any] = {
        "v": WIRE_VERSION,
        "gateway": envelope.gateway,
        "epoch": envelope.epoch,
        "device": envelope.device,
        "stream": envelope.stream,
        "seq": envelope.seq,
        "ts": format_ts(envelope.ts),
        "value": envelope.value,
    }
    if envelope.unit is not None:
        body["unit"] = envelope.unit
    if envelope.confirm:
        body["confirm"] = True
    if envelope.ts_quality is not None:
        body["ts_quality"] = envelope.ts_quality
    if envelope.dropped is not None:
        body["dropped"] = list(envelope.dropped)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def json_safe(value: Any) -> bool:
    """True when `value` encodes as strict UTF-8 JSON.

    Rejects what `encode` would fail on: NaN or infinity, strings and keys
    that are not valid Unicode (lone surrogates, which a JSON line can carry
    as an escape), non-string keys; and nesting the consumer refuses
    (`MAX_DEPTH` with the envelope).
    """
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is str:
        # Per reading: scalars skip the full encode below; only lone surrogates fail here.
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if _nesting(value) >= MAX_DEPTH:  # the envelope around it is one more level
        return False
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def _nesting(value: Any) -> int:
    """How deep arrays and objects nest in `value` (0 for a scalar), counted up to MAX_DEPTH."""
    depth, level = 0, [value]
    while depth < MAX_DEPTH:
        containers = [item for item in level if isinstance(item, list | dict)]
        if not containers:
            break
        depth += 1
        level = [inner for item in containers
                 for inner in (item.values() if isinstance(item, dict) else item)]
    return depth


def parse_object(payload: bytes, depth: int = MAX_DEPTH) -> dict[str, Any] | Undecodable:
    """The JSON object a payload holds, or why it holds none (`depth`: the deepest nesting
    allowed, checked before parsing)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Undecodable("invalid_utf8", "payload is not UTF-8")
    if nesting_exceeds(text, depth):
        return Undecodable("too_deep", f"arrays and objects nest deeper than {depth}")
    try:
        body = loads_strict(text)
    except json.JSONDecodeError as exc:
        return Undecodable("bad_json", f"not JSON ({exc.msg})")
    except (ValueError, RecursionError) as exc:
        # NaN, Infinity, 1e400, an integer of over 4300 digits, or nesting deeper than the stack.
        return Undecodable("bad_json", f"not JSON ({type(exc).__name__}: {exc!s:.60})")
    if not isinstance(body, dict):
        return Undecodable("not_an_object", "payload is not a JSON object")
    return body


def version_of(body: dict[str, Any]) -> int | Undecodable:
    """The major wire version `v` of a payload's object."""
    version = body.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        return Undecodable("bad_field", f"'v' must be an integer, found {version!r:.40}")
    return version


def decode(payload: bytes) -> Envelope | Undecodable:
    """Parse and check one payload."""
    body = parse_object(payload)
    if isinstance(body, Undecodable):
        return body
    version = version_of(body)
    if isinstance(version, Undecodable):
        return version
    if version != WIRE_VERSION:
        return Undecodable("unknown_version", f"wire version v={version} (this consumer reads v=1)")
    return check_reading(body, body)


def check_reading(body: dict[str, Any], head: dict[str, Any]) -> Envelope | Undecodable:
    """One reading from its fields: `body` holds stream, seq, ts, value, unit and confirm;
    `head` holds gateway, epoch and device (the same object in v1, the batch's in v2)."""
    for key in _REQUIRED_TEXT:
        source = body if key == "stream" else head
        if not isinstance(source.get(key), str) or not source[key]:
            return Undecodable("bad_field", f"'{key}' must be a non-empty string")
    seq = body.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        return Undecodable("bad_field", f"'seq' must be an integer from 1 to 2^63-1, found {seq!r:.40}")
    ts_text = body.get("ts")
    ts = parse_ts(ts_text) if isinstance(ts_text, str) else None
    if ts is None:
        return Undecodable("bad_field", f"'ts' must be an RFC 3339 UTC time, found {ts_text!r:.40}")
    if "value" not in body:
        return Undecodable("bad_field", "'value' is missing")
    unit = body.get("unit")
    if unit is not None and not isinstance(unit, str):
        return Undecodable("bad_field", "'unit' must be a string")
    confirm = body.get("confirm", False)
    if not isinstance(confirm, bool):
        return Undecodable("bad_field", "'confirm' must be true or false")
    quality = body.get("ts_quality")
    if quality is not None and (not isinstance(quality, str) or not 0 < len(quality) <= MAX_TS_QUALITY):
        return Undecodable("bad_field", f"'ts_quality' must be a string of 1 to {MAX_TS_QUALITY} "
                                        "characters")
    dropped = _dropped(body.get("dropped"), seq)
    if isinstance(dropped, Undecodable):
        return dropped
    return Envelope(head["gateway"], head["epoch"], head["device"], body["stream"], seq, ts,
                    body["value"], unit, confirm, quality, dropped)


def _dropped(field: Any, seq: int) -> tuple[int, int] | Undecodable | None:
    """The optional `dropped` range: `[first, last]` with 1 <= first <= last < seq."""
    if field is None:
        return None
    if (isinstance(field, list) and len(field) == 2
            and all(type(n) is int for n in field) and 1 <= field[0] <= field[1] < seq):
        return field[0], field[1]
    return Undecodable("bad_field", "'dropped' must be [first, last] with 1 <= first <= last < seq")
