"""LineFramer: line splitting, CRLF, the memory cap and over-long lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.base import Rejected, excerpt
from devices.serial.framing import Line, LineFramer


def feed_all(framer: LineFramer, *chunks: bytes) -> list[Line | Rejected]:
    events: list[Line | Rejected] = []
    for chunk in chunks:
        events.extend(framer.feed(chunk))
    return events


def test_splits_on_newline_and_strips_one_carriage_return() -> None:
    events = feed_all(LineFramer(64), b"a\nbb\r\n\nc\r\r\n")
    assert events == [Line(b"a"), Line(b"bb"), Line(b""), Line(b"c\r")]


def test_unfinished_line_waits_for_its_newline() -> None:
    framer = LineFramer(64)
    assert framer.feed(b"hel") == []
    assert framer.buffered_bytes == 3
    assert framer.feed(b"lo\r") == []
    assert framer.feed(b"\nnext") == [Line(b"hello")]
    assert framer.buffered_bytes == 4


def test_line_of_exactly_the_limit_is_accepted_with_lf_or_crlf() -> None:
    framer = LineFramer(4)
    assert feed_all(framer, b"abcd\n", b"abcd\r", b"\n") == [Line(b"abcd"), Line(b"abcd")]


def test_line_one_byte_over_the_limit_is_rejected() -> None:
    events = LineFramer(4).feed(b"abcde\nok\n")
    assert len(events) == 2
    assert isinstance(events[0], Rejected)
    assert events[0].reason == "line_too_long"
    assert "4 bytes" in events[0].detail
    assert events[1] == Line(b"ok")


def test_over_long_line_is_reported_once_and_discarded_to_its_newline() -> None:
    framer = LineFramer(16)
    events = feed_all(framer, b"x" * 10, b"y" * 10, b"z" * 1000, b"z" * 1000, b"tail\nnext\n")
    assert [type(event) for event in events] == [Rejected, Line]
    assert events[1] == Line(b"next")
    assert framer.buffered_bytes == 0


def test_huge_chunk_never_enters_the_buffer() -> None:
    framer = LineFramer(16)
    framer.feed(b"q" * 1_000_000)
    assert framer.buffered_bytes == 0
    assert framer.feed(b"\nfine\n") == [Line(b"fine")]


def test_reject_detail_quotes_a_short_repr_of_the_line() -> None:
    [event] = LineFramer(16).feed(b"\x00\x01" + b"a" * 100 + b"\n")
    assert isinstance(event, Rejected)
    assert "\\x00\\x01" in event.detail
    assert event.detail.endswith("...")
    assert len(event.detail) < 100


def test_reset_reports_an_unfinished_line_and_starts_clean() -> None:
    framer = LineFramer(64)
    framer.feed(b'{"half": ')
    dropped = framer.reset()
    assert dropped is not None
    assert dropped.reason == "line_truncated"
    assert framer.buffered_bytes == 0
    assert framer.reset() is None
    assert framer.feed(b"1\n") == [Line(b"1")]


def test_reset_while_discarding_an_over_long_line_forgets_it() -> None:
    framer = LineFramer(16)
    framer.feed(b"a" * 40)
    assert framer.reset() is None
    assert framer.feed(b"b\n") == [Line(b"b")]


def test_constructor_and_events_validate_their_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        LineFramer(0)
    with pytest.raises(ValueError, match="snake_case"):
        Rejected("Bad Reason", "x")
    with pytest.raises(TypeError):
        Line("text")  # type: ignore[arg-type]


def test_excerpt_cuts_long_input() -> None:
    assert excerpt(b"ab") == "b'ab'"
    assert excerpt("x" * 50, limit=3) == "'xxx'..."


def _one_shot(data: bytes, limit: int) -> list[Line | Rejected]:
    return LineFramer(limit).feed(data)


@given(
    data=st.binary(max_size=400).map(lambda b: b.replace(b"z", b"\n")),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=20),
    limit=st.integers(min_value=1, max_value=40),
)
def test_chunking_never_changes_the_events(data: bytes, cuts: list[int], limit: int) -> None:
    framer = LineFramer(limit)
    events: list[Line | Rejected] = []
    previous = 0
    for cut in [*sorted(c for c in cuts if c <= len(data)), len(data)]:
        events.extend(framer.feed(data[previous:cut]))
        previous = cut
        assert framer.buffered_bytes <= limit + 1
    assert events == _one_shot(data, limit)


@given(data=st.binary(max_size=400), limit=st.integers(min_value=1, max_value=40))
def test_every_terminated_line_gives_exactly_one_event(data: bytes, limit: int) -> None:
    events = LineFramer(limit).feed(data + b"\n")
    assert len(events) == data.count(b"\n") + 1
    for event in events:
        if isinstance(event, Line):
            assert len(event.data) <= limit
            assert b"\n" not in event.data
