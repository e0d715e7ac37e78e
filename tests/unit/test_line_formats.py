"""Line parsers: json, csv and key=value lines to fields or a reject."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.base import Rejected
from devices.serial.line_formats import (
    FORMATS,
    LineParser,
    convert_value,
    csv_parser,
    parse_json,
    parse_kv,
    parser_for,
)


def reason_of(result: object) -> str:
    assert isinstance(result, Rejected), f"expected a reject, got {result!r}"
    return result.reason


# -- json -------------------------------------------------------------------


def test_json_object_becomes_fields() -> None:
    line = '{"temp_c": 21.5, "alarm": false, "n": 3, "tags": ["a"], "name": "gh-1 °"}'
    assert parse_json(line.encode()) == {
        "temp_c": 21.5,
        "alarm": False,
        "n": 3,
        "tags": ["a"],
        "name": "gh-1 °",
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"temp_c": 21.5', "bad_json"),
        (b"garbage", "bad_json"),
        (b'{"a": NaN}', "bad_json"),
        (b'{"a": -Infinity}', "bad_json"),
        (b'{"a": 1e999}', "bad_json"),
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        (b'{"a": ' + b"9" * 5000 + b"}", "bad_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"42", "not_an_object"),
        (b"null", "not_an_object"),
        (b'{"a": "\xff"}', "invalid_utf8"),
    ],
)
def test_json_garbage_is_rejected_by_reason(line: bytes, reason: str) -> None:
    assert reason_of(parse_json(line)) == reason


def test_json_detail_says_what_was_wrong_and_quotes_briefly() -> None:
    result = parse_json(b'{"temp_c": 21.5, "x": ' + b"1" * 200)
    assert isinstance(result, Rejected)
    assert "column" in result.detail
    assert "..." in result.detail
    assert len(result.detail) < 140


def test_json_non_object_detail_names_the_type() -> None:
    result = parse_json(b"[1]")
    assert isinstance(result, Rejected)
    assert "array" in result.detail


def test_invalid_utf8_detail_shows_the_bytes_and_offset() -> None:
    result = parse_json(b"ab\xfe\x01")
    assert isinstance(result, Rejected)
    assert "offset 2" in result.detail
    assert "\\xfe\\x01" in result.detail


@pytest.mark.parametrize("parse", [parse_json, parse_kv, csv_parser(["a"])])
@pytest.mark.parametrize("line", [b"", b"   ", b"\t"])
def test_blank_lines_are_skipped_silently(parse: LineParser, line: bytes) -> None:
    assert parse(line) is None


# -- csv --------------------------------------------------------------------


def test_csv_columns_are_named_and_values_typed() -> None:
    parse = csv_parser(["temp_c", "humidity_pct", "counter", "alarm", "site"])
    assert parse(b"21.5, 40, -3,true,gh 1") == {
        "temp_c": 21.5,
        "humidity_pct": 40,
        "counter": -3,
        "alarm": True,
        "site": "gh 1",
    }


def test_csv_other_delimiter_and_quoted_delimiter() -> None:
    parse = csv_parser(["a", "b"], delimiter=";")
    assert parse(b'"x;y";2') == {"a": "x;y", "b": 2}


def test_csv_wrong_column_count_says_expected_and_found() -> None:
    result = csv_parser(["a", "b", "c"])(b"1,2")
    assert isinstance(result, Rejected)
    assert result.reason == "bad_csv"
    assert "expected 3 columns, found 2" in result.detail


def test_csv_bad_quoting_and_bad_utf8_are_rejected() -> None:
    parse = csv_parser(["a", "b"])
    assert reason_of(parse(b'"open,2')) == "bad_csv"
    assert reason_of(parse(b"1,\xc3")) == "invalid_utf8"


def test_csv_parser_refuses_unusable_settings() -> None:
    with pytest.raises(ValueError, match="column"):
        csv_parser([])
    with pytest.raises(ValueError, match="delimiter"):
        csv_parser(["a"], delimiter="::")


# -- kv ---------------------------------------------------------------------


def test_kv_pairs_split_on_spaces_and_commas() -> None:
    assert parse_kv(b"temp_c=21.5, hum=40 ,ok=false  name=gh-1,,") == {
        "temp_c": 21.5,
        "hum": 40,
        "ok": False,
        "name": "gh-1",
    }


@pytest.mark.parametrize(
    ("line", "fragment"),
    [(b"a=1 lonely", "no '='"), (b"=5", "empty key"), (b"a=1 a=2", "repeated")],
)
def test_kv_bad_tokens_are_rejected_with_a_reason(line: bytes, fragment: str) -> None:
    result = parse_kv(line)
    assert isinstance(result, Rejected)
    assert result.reason == "bad_kv"
    assert fragment in result.detail


# -- values and choice ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("-7", -7),
        ("+3", 3),
        ("2.50", 2.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("True", "True"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("-Infinity", "-Infinity"),
        ("1e999", "1e999"),
        ("1_000", "1_000"),
        ("0x10", "0x10"),
        ("", ""),
        ("9" * 5000, "9" * 5000),
    ],
)
def test_convert_value(text: str, value: object) -> None:
    converted = convert_value(text)
    assert converted == value
    assert type(converted) is type(value)


def test_parser_for_chooses_by_format_name() -> None:
    assert parser_for("json") is parse_json
    assert parser_for("kv") is parse_kv
    assert parser_for("csv", ["x"], ";")(b"1") == {"x": 1}
    with pytest.raises(ValueError, match="xml"):
        parser_for("xml")


# -- properties -------------------------------------------------------------

_PARSERS = [parser_for(name, ["a", "b", "c"], "\t" if name == "csv" else ",") for name in FORMATS]
_ALPHABET = b'{}[]":,=.-+0123456789aetrufls nNI\t\r\\\xff\xc3\x00'


def _assert_well_formed(result: object) -> None:
    if isinstance(result, Rejected):
        assert result.reason.isidentifier()
        assert len(result.detail) < 200
    elif result is not None:
        assert isinstance(result, dict)  # may be empty: `{}` is a JSON object
        for key, value in result.items():
            assert isinstance(key, str)
            if isinstance(value, float):
                assert math.isfinite(value)


@given(line=st.binary(max_size=300))
def test_random_bytes_never_raise(line: bytes) -> None:
    for parse in _PARSERS:
        _assert_well_formed(parse(line))


@given(line=st.lists(st.sampled_from(list(_ALPHABET)), max_size=80).map(bytes))
def test_near_valid_bytes_never_raise(line: bytes) -> None:
    for parse in _PARSERS:
        _assert_well_formed(parse(line))


@given(
    fields=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
        min_size=1,
    )
)
def test_json_objects_round_trip(fields: dict[str, object]) -> None:
    assert parse_json(json.dumps(fields).encode()) == fields
