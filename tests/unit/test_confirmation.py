"""End-to-end confirmation: marks, the confirmation codec, and what a gateway trusts."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from gateway.confirmation import (
    Mark,
    Marks,
    check_mark,
    confirm_topic,
    decode_marks,
    encode_marks,
    is_confirm_topic,
    prefix_of,
)

KEY = ("gw", "E1", "dev", "eo")


def test_mark_moves_only_over_contiguous_seqs() -> None:
    marks = Marks()
    for seq in (1, 2, 4, 5):
        marks.add(KEY, seq)
    assert marks.mark(KEY) == 2
    marks.add(KEY, 3)
    assert marks.mark(KEY) == 5
    marks.add(KEY, 2)  # a duplicate changes nothing
    assert marks.mark(KEY) == 5


def test_a_seeded_mark_continues_from_the_database() -> None:
    marks = Marks()
    assert not marks.known(KEY)
    marks.seed(KEY, 40)
    assert marks.known(KEY)
    marks.add(KEY, 42)
    assert marks.mark(KEY) == 40
    marks.add(KEY, 41)
    assert marks.mark(KEY) == 42


@given(st.integers(min_value=1, max_value=200), st.randoms())
def test_any_arrival_order_with_duplicates_ends_at_the_last_seq(n: int, rnd: random.Random) -> None:
    seqs = list(range(1, n + 1)) + [rnd.randint(1, n) for _ in range(n // 3)]
    rnd.shuffle(seqs)
    marks = Marks()
    for seq in seqs:
        marks.add(KEY, seq)
    assert marks.mark(KEY) == n


def test_codec_round_trip() -> None:
    marks = [Mark("E1", "dev", "eo", 17), Mark("E2", "dev", "alarm", 2**63 - 1)]
    assert decode_marks(encode_marks("gw-1", marks)) == ("gw-1", marks)


def test_bad_confirmations_say_why() -> None:
    assert decode_marks(b"{nope") == "not JSON"
    assert decode_marks(b'{"v": 2, "gateway": "g", "marks": []}') == "not a version 1 confirmation"
    assert decode_marks(b'{"v": 1, "marks": []}') == "missing gateway or marks"
    for bad in ('["E", "d", "s", 0]', '["E", "d", "s", true]', '["E", "d", 5]', '["", "d", "s", 1]'):
        payload = f'{{"v": 1, "gateway": "g", "marks": [{bad}]}}'.encode()
        assert decode_marks(payload) == "a mark is not [epoch, device, stream, seq]", bad


@given(st.binary(max_size=200))
def test_decoding_garbage_never_raises(payload: bytes) -> None:
    decode_marks(payload)


def test_a_gateway_trusts_only_known_streams_and_issued_seqs() -> None:
    mark = Mark("E1", "dev", "eo", 10)
    assert check_mark(mark, None) == "confirm_unknown_stream"
    assert check_mark(mark, 9) == "confirm_future_seq"
    assert check_mark(mark, 10) is None
    assert check_mark(mark, 500) is None


def test_topics() -> None:
    assert confirm_topic("gw/site-1") == "gw/site-1/_confirm"
    assert is_confirm_topic("gw/site-1/_confirm")
    assert not is_confirm_topic("gw/site-1/dev/_confirmed")
    assert prefix_of("gw/site-1/dev/eo") == "gw/site-1"
    assert prefix_of("dev/eo") is None
