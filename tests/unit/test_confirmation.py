"""End-to-end confirmation: committed ranges, the confirmation codec, what a gateway trusts."""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.confirmation import (
    MAX_CONFIRM_BYTES,
    MAX_CONFIRM_RANGES,
    Mark,
    Undecodable,
    confirm_topic,
    decode_marks,
    encode_confirmations,
    encode_marks,
    is_confirm_topic,
    prefix_of,
    ranges,
    trusted_range,
)


def test_ranges_merge_consecutive_seqs() -> None:
    assert ranges([3, 1, 2, 7, 8, 8, 10]) == [(1, 3), (7, 8), (10, 10)]
    assert ranges([]) == []


@given(st.sets(st.integers(min_value=1, max_value=500), max_size=100), st.randoms())
def test_ranges_cover_exactly_the_seqs(seqs: set[int], rnd: random.Random) -> None:
    shuffled = list(seqs) * 2
    rnd.shuffle(shuffled)
    runs = ranges(shuffled)
    covered = {seq for first, last in runs for seq in range(first, last + 1)}
    assert covered == seqs
    assert all(b[0] > a[1] + 1 for a, b in pairwise(runs))


def test_codec_round_trip() -> None:
    marks = [Mark("E1", "dev", "eo", 1, 17), Mark("E2", "dev", "alarm", 5, 2**63 - 1)]
    assert decode_marks(encode_marks("gw-1", marks)) == ("gw-1", marks)


def test_bad_confirmations_say_why() -> None:
    def undecodable(detail: str) -> Undecodable:
        return Undecodable("confirm_undecodable", detail)
    assert decode_marks(b"{nope") == undecodable("not JSON")
    assert decode_marks(b'{"v": 2, "gateway": "g", "marks": []}') == undecodable(
        "not a version 1 confirmation")
    assert decode_marks(b'{"v": 1, "marks": []}') == undecodable("missing gateway or marks")
    for bad in ('["E", "d", "s", 0, 1]', '["E", "d", "s", 1, true]', '["E", "d", 5, 1, 2]',
                '["", "d", "s", 1, 1]', '["E", "d", "s", 5, 4]', '["E", "d", "s", 3]'):
        payload = f'{{"v": 1, "gateway": "g", "marks": [{bad}]}}'.encode()
        assert decode_marks(payload) == undecodable(
            "a mark is not [epoch, device, stream, first, last]"), bad


def test_an_oversized_confirmation_is_refused_before_it_is_parsed() -> None:
    """126 MB of JSON took the event loop 23 s to parse; the length alone refuses it now."""
    huge = b"[" * (MAX_CONFIRM_BYTES + 1)  # would raise RecursionError if it were parsed
    refused = decode_marks(huge)
    assert isinstance(refused, Undecodable) and refused.reason == "confirm_too_large", refused


def test_a_confirmation_with_too_many_ranges_is_refused() -> None:
    marks = [Mark("E", "d", "s", 2 * i + 1, 2 * i + 1) for i in range(MAX_CONFIRM_RANGES + 1)]
    payload = encode_marks("g", marks)
    assert len(payload) <= MAX_CONFIRM_BYTES
    refused = decode_marks(payload)
    assert isinstance(refused, Undecodable) and refused.reason == "confirm_too_many_ranges"
    assert decode_marks(encode_marks("g", marks[:MAX_CONFIRM_RANGES])) == (
        "g", marks[:MAX_CONFIRM_RANGES])


@given(st.lists(st.tuples(st.text(min_size=1, max_size=300), st.integers(1, 2**63 - 1)),
                max_size=3000))
def test_the_consumer_splits_confirmations_within_the_bounds(
        items: list[tuple[str, int]]) -> None:
    marks = [Mark("E" * 30, device, "stream", seq, seq) for device, seq in items]
    payloads = encode_confirmations("gw-1", marks)
    decoded = [decode_marks(p) for p in payloads]
    assert all(len(p) <= MAX_CONFIRM_BYTES for p in payloads)
    assert [m for d in decoded if isinstance(d, tuple) for m in d[1]] == marks


@given(st.binary(max_size=200))
def test_decoding_garbage_never_raises(payload: bytes) -> None:
    decode_marks(payload)


def test_a_gateway_trusts_only_known_streams_and_issued_seqs() -> None:
    mark = Mark("E1", "dev", "eo", 3, 10)
    assert trusted_range(mark, None, True) == "confirm_unknown_stream"
    assert trusted_range(mark, 9, True) == "confirm_future_seq"
    assert trusted_range(mark, 10, True) == (3, 10)
    assert trusted_range(mark, 500, False) == (3, 10)


def test_an_earlier_epoch_rolled_back_by_a_power_cut_is_clipped_not_ignored() -> None:
    # The consumer stored seqs 1..100 of E0; a power cut rolled E0's counter back to 90.
    assert trusted_range(Mark("E0", "dev", "eo", 80, 100), 90, False) == (80, 90)
    assert trusted_range(Mark("E0", "dev", "eo", 95, 100), 90, False) == "confirm_future_seq"


def test_topics() -> None:
    assert confirm_topic("gw/site-1") == "gw/site-1/_confirm"
    assert is_confirm_topic("gw/site-1/_confirm")
    assert not is_confirm_topic("gw/site-1/dev/_confirmed")
    assert prefix_of("gw/site-1/dev/eo") == "gw/site-1"
    assert prefix_of("dev/eo") is None
