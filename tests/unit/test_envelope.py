"""The wire format (docs/contracts.md, "Wire format v1"): encode, decode, every reason for a refusal."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.envelope import (
    MAX_DEPTH,
    MAX_SEQ,
    Envelope,
    Undecodable,
    decode,
    encode,
    format_ts,
    json_safe,
    parse_ts,
)

RFC3339_MS_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
TS = 1_795_726_800.123  # 2026-11-26T21:00:00.123Z

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
names = st.text(min_size=1, max_size=30)
# Times whole in milliseconds survive the millisecond `ts` exactly while a float still
# resolves a microsecond: up to 2^32 s (the year 2106).
ms_times = st.integers(min_value=0, max_value=2**32 * 1000).map(lambda ms: ms / 1000)


def envelope(**changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "gateway": "greenhouse-01", "epoch": "20261126T210000Z-ab12", "device": "climate",
        "stream": "temperature", "seq": 1234, "ts": TS, "value": 21.5, "unit": "°C",
    }
    fields.update(changes)
    return Envelope(**fields)


def body(**changes: Any) -> dict[str, Any]:
    """A valid decoded payload as a dict; a change to `...` removes the key."""
    out = json.loads(encode(envelope()))
    for key, value in changes.items():
        if value is ...:
            del out[key]
        else:
            out[key] = value
    return out


def payload(**changes: Any) -> bytes:
    return json.dumps(body(**changes)).encode()


def test_encode_is_the_documented_json() -> None:
    assert json.loads(encode(envelope())) == {
        "v": 1, "gateway": "greenhouse-01", "epoch": "20261126T210000Z-ab12", "device": "climate",
        "stream": "temperature", "seq": 1234, "ts": "2026-11-26T21:00:00.123Z", "value": 21.5,
        "unit": "°C",
    }


def test_encode_is_utf8_without_escapes_and_omits_a_missing_unit() -> None:
    raw = encode(envelope(unit="µg/m³"))
    assert "µg/m³".encode() in raw
    assert "unit" not in json.loads(encode(envelope(unit=None)))


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode(envelope(value=float("nan")))


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (TS, "2026-11-26T21:00:00.123Z"),
        (1_795_726_800.9999, "2026-11-26T21:00:00.999Z"),  # truncated, never rounded up a second
        (1_795_726_800.0005, "2026-11-26T21:00:00.000Z"),
        (-62_135_596_800.0, "0001-01-01T00:00:00.000Z"),  # four-digit year even before 1000
    ],
)
def test_ts_is_rfc3339_utc_with_milliseconds_and_z(ts: float, text: str) -> None:
    assert format_ts(ts) == text
    assert RFC3339_MS_Z.fullmatch(text)


def _format_ts_by_datetime(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.") \
        + f"{moment.microsecond // 1000:03d}Z"


@given(st.floats(min_value=-62_135_596_800.0, max_value=253_402_300_798.0))
def test_ts_text_is_what_datetime_gives_for_any_time(ts: float) -> None:
    # format_ts formats the date once per second and rounds the microseconds itself.
    assert format_ts(ts) == _format_ts_by_datetime(ts)


@pytest.mark.parametrize("ts", [-0.0005, -0.9999995, 1.9999995, -1e-7, 1_795_726_800.9999996,
                                1_795_726_800.0000004])
def test_ts_text_at_rounding_edges_is_what_datetime_gives(ts: float) -> None:
    assert format_ts(ts) == _format_ts_by_datetime(ts)
    assert format_ts(ts + 1) == _format_ts_by_datetime(ts + 1)  # and after the cached second moves


@given(ms_times)
def test_ts_round_trips_at_millisecond_precision(ts: float) -> None:
    text = format_ts(ts)
    assert RFC3339_MS_Z.fullmatch(text)
    assert parse_ts(text) == ts


def test_parse_ts_takes_offsets_and_refuses_local_times() -> None:
    assert parse_ts("2026-11-26T22:00:00.123+01:00") == pytest.approx(TS)
    assert parse_ts("2026-11-26T21:00:00.123") is None
    assert parse_ts("2026-11-26") is None
    assert parse_ts("yesterday") is None


envelopes = st.builds(
    Envelope, gateway=names, epoch=names, device=names, stream=names,
    seq=st.integers(min_value=1, max_value=MAX_SEQ),
    ts=ms_times, value=json_values, unit=st.none() | st.text(),
)


@given(envelopes)
def test_round_trip(original: Envelope) -> None:
    assert json_safe(original.value)
    assert decode(encode(original)) == original


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"v": 1, "gateway": "\xc3"}', "invalid_utf8"),
        (b"", "bad_json"),
        (b"temp=21.5", "bad_json"),
        (b'{"v": 1,', "bad_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),  # refused before parsing
        (b'{"v": 1, "value": ' + b"7" * 5000 + b"}", "bad_json"),  # over int's 4300-digit limit
    ],
    ids=["not-utf8", "truncated-utf8", "empty", "not-json", "cut-short", "array", "string", "null",
         "nested-too-deep", "huge-integer"],
)
def test_decode_refuses_what_is_not_a_json_object(raw: bytes, reason: str) -> None:
    result = decode(raw)
    assert isinstance(result, Undecodable)
    assert result.reason == reason
    assert result.detail


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_decode_refuses_numbers_json_has_not(constant: str) -> None:
    raw = payload().replace(b'"value": 21.5', b'"value": ' + constant.encode())
    assert constant.encode() in raw
    result = decode(raw)
    assert isinstance(result, Undecodable)
    assert result.reason == "bad_json"


@pytest.mark.parametrize("version", [2, 0, 99])
def test_decode_refuses_an_unknown_major_version(version: int) -> None:
    result = decode(payload(v=version))
    assert isinstance(result, Undecodable)
    assert result.reason == "unknown_version"
    assert f"v={version}" in result.detail


BAD_FIELDS = [
    ("no-version", {"v": ...}, "'v'"),
    ("version-string", {"v": "1"}, "'v'"),
    ("version-bool", {"v": True}, "'v'"),
    ("no-gateway", {"gateway": ...}, "'gateway'"),
    ("empty-epoch", {"epoch": ""}, "'epoch'"),
    ("device-number", {"device": 7}, "'device'"),
    ("no-stream", {"stream": ...}, "'stream'"),
    ("no-seq", {"seq": ...}, "'seq'"),
    ("seq-zero", {"seq": 0}, "'seq'"),
    ("seq-negative", {"seq": -1}, "'seq'"),
    ("seq-bool", {"seq": True}, "'seq'"),
    ("seq-float", {"seq": 5.0}, "'seq'"),
    ("seq-string", {"seq": "5"}, "'seq'"),
    ("seq-over-2^63-1", {"seq": MAX_SEQ + 1}, "'seq'"),
    ("no-ts", {"ts": ...}, "'ts'"),
    ("ts-without-timezone", {"ts": "2026-11-26T21:00:00.123"}, "'ts'"),
    ("ts-number", {"ts": TS}, "'ts'"),
    ("ts-not-a-time", {"ts": "tomorrow"}, "'ts'"),
    ("ts-utc-before-year-1", {"ts": "0001-01-01T00:00:00+01:00"}, "'ts'"),
    ("ts-utc-after-year-9999", {"ts": "9999-12-31T23:59:59-01:00"}, "'ts'"),
    ("no-value", {"value": ...}, "'value'"),
    ("unit-number", {"unit": 5}, "'unit'"),
]


@pytest.mark.parametrize(("changes", "named"), [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS])
def test_decode_refuses_a_bad_field(changes: dict[str, Any], named: str) -> None:
    result = decode(payload(**changes))
    assert isinstance(result, Undecodable)
    assert result.reason == "bad_field"
    assert named in result.detail


def test_decode_accepts_the_edges() -> None:
    assert decode(payload(seq=MAX_SEQ)) == envelope(seq=MAX_SEQ)
    assert decode(payload(seq=1)) == envelope(seq=1)
    assert decode(payload(unit=...)) == envelope(unit=None)
    assert decode(payload(value=None)) == envelope(value=None)
    assert decode(payload(extra="ignored")) == envelope()


def test_a_decoded_ts_can_always_be_written_back() -> None:
    # The consumer stores format_ts(envelope.ts): anything decode accepts must format.
    for text in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2026-11-26T21:00:00-12:00"):
        result = decode(payload(ts=text))
        assert isinstance(result, Envelope), text
        written = format_ts(result.ts)
        assert RFC3339_MS_Z.fullmatch(written), written
        assert datetime.fromisoformat(written).tzinfo == UTC


@given(st.binary(max_size=300))
def test_decode_of_arbitrary_bytes_never_raises(raw: bytes) -> None:
    assert isinstance(decode(raw), Envelope | Undecodable)


@given(st.dictionaries(st.sampled_from(["v", "gateway", "epoch", "device", "stream", "seq", "ts",
                                         "value", "unit"]),
                       json_values | st.integers(min_value=-(2**70), max_value=2**70), max_size=9))
def test_decode_of_arbitrary_objects_never_raises(fields: dict[str, Any]) -> None:
    result = decode(json.dumps(fields).encode())
    if isinstance(result, Envelope):
        assert 1 <= result.seq <= MAX_SEQ
        format_ts(result.ts)


@pytest.mark.parametrize("value", [
    "\ud800",                      # a lone surrogate, as `"\ud800"` in a JSON line decodes to
    {"a": ["ok", "\udfff"]},
    {"\ud800": 1},
    float("nan"),
    [float("inf")],
])
def test_json_safe_rejects_what_encode_cannot_write(value: object) -> None:
    assert not json_safe(value)


def test_json_safe_accepts_ordinary_values() -> None:
    assert json_safe({"temp_c": 21.5, "tags": ["a", "°C"], "ok": True, "n": None})


def test_json_safe_refuses_the_nesting_the_consumer_refuses() -> None:
    """The gateway must not store a value its consumer would refuse (too_deep) forever."""
    value: object = 1
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert json_safe(value)
    assert isinstance(decode(encode(Envelope("g", "e", "d", "s", 1, 1e9, value, None))), Envelope)
    assert not json_safe({"deeper": value})
    assert not isinstance(decode(encode(Envelope("g", "e", "d", "s", 1, 1e9, [value], None))),
                          Envelope)


def test_ts_quality_is_optional_and_round_trips() -> None:
    plain = encode(envelope())
    assert b"ts_quality" not in plain
    marked = encode(envelope(ts_quality="unsynced"))
    assert json.loads(marked)["ts_quality"] == "unsynced"
    decoded = decode(marked)
    assert isinstance(decoded, Envelope) and decoded.ts_quality == "unsynced"


@pytest.mark.parametrize("quality", [1, "", "x" * 33, ["unsynced"], True])
def test_a_bad_ts_quality_is_a_bad_field(quality: Any) -> None:
    body = json.loads(encode(envelope()))
    body["ts_quality"] = quality
    result = decode(json.dumps(body).encode())
    assert isinstance(result, Undecodable) and result.reason == "bad_field"
    assert "ts_quality" in result.detail


def test_dropped_is_optional_and_round_trips() -> None:
    assert b"dropped" not in encode(envelope())
    marked = encode(envelope(dropped=(3, 9)))
    assert json.loads(marked)["dropped"] == [3, 9]
    decoded = decode(marked)
    assert isinstance(decoded, Envelope) and decoded.dropped == (3, 9)


@pytest.mark.parametrize("dropped", [[3], [9, 3], [0, 2], [3, 1234], [1, 1300], ["1", "2"],
                                     [True, 2], 5, {"first": 1}])
def test_a_bad_dropped_range_is_a_bad_field(dropped: Any) -> None:
    body = json.loads(encode(envelope()))  # seq 1234
    body["dropped"] = dropped
    result = decode(json.dumps(body).encode())
    assert isinstance(result, Undecodable) and result.reason == "bad_field"
    assert "dropped" in result.detail
