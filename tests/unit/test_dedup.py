"""Consumer bookkeeping: fresh readings, duplicates and gaps per stream."""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.dedup import StreamCounters, StreamDelta, StreamId, fold

A: StreamId = ("gw1", "20261126T210000Z-ab12", "climate", "temperature")
B: StreamId = ("gw1", "20261126T210000Z-ab12", "climate", "alarm")
ZERO = StreamCounters(0, 0, 0)


def test_fold_counts_fresh_and_duplicates_per_stream() -> None:
    deltas = fold([(A, 1, True), (A, 3, True), (A, 1, False), (B, 5, True), (A, 2, True), (B, 5, False)])
    assert deltas == {
        A: StreamDelta(max_seq=3, received=3, duplicates=1),
        B: StreamDelta(max_seq=5, received=1, duplicates=1),
    }


def test_fold_of_nothing_is_empty() -> None:
    assert fold([]) == {}


def test_a_duplicate_does_not_raise_max_seq() -> None:
    assert fold([(A, 9, False)]) == {A: StreamDelta(max_seq=0, received=0, duplicates=1)}


def test_gaps_are_max_seq_minus_received() -> None:
    counters = ZERO.plus(fold([(A, 1, True), (A, 2, True), (A, 5, True)])[A])
    assert counters == StreamCounters(max_seq=5, received=3, duplicates=0)
    assert counters.gaps == 2  # seqs 3 and 4
    later = counters.plus(fold([(A, 3, True), (A, 4, True), (A, 4, False)])[A])
    assert later == StreamCounters(max_seq=5, received=5, duplicates=1)
    assert later.gaps == 0


def test_gaps_never_go_negative() -> None:
    assert StreamCounters(max_seq=2, received=5, duplicates=0).gaps == 0


def test_plus_keeps_the_highest_max_seq() -> None:
    counters = StreamCounters(max_seq=10, received=10, duplicates=0)
    assert counters.plus(StreamDelta(max_seq=4, received=0, duplicates=2)) == StreamCounters(10, 10, 2)


def arrive(seqs: list[int]) -> list[tuple[StreamId, int, bool]]:
    """What the database says of each arrival: fresh the first time a seq is seen."""
    seen: set[int] = set()
    out = []
    for seq in seqs:
        out.append((A, seq, seq not in seen))
        seen.add(seq)
    return out


@given(
    seq_set=st.sets(st.integers(min_value=1, max_value=2**63 - 1), min_size=1, max_size=40),
    extra=st.lists(st.integers(min_value=0, max_value=39), max_size=40),
    shuffle_seed=st.integers(),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=5),
)
def test_counters_do_not_depend_on_order_duplicates_or_batching(
    seq_set: set[int], extra: list[int], shuffle_seed: int, cuts: list[int]
) -> None:
    ordered = sorted(seq_set)
    arrivals = ordered + [ordered[i % len(ordered)] for i in extra]  # every seq, some twice or more
    random.Random(shuffle_seed).shuffle(arrivals)
    outcomes = arrive(arrivals)
    counters = ZERO
    bounds = [0, *sorted(c % (len(outcomes) + 1) for c in cuts), len(outcomes)]
    for start, end in pairwise(bounds):
        delta = fold(outcomes[start:end]).get(A)
        if delta is not None:
            counters = counters.plus(delta)
    assert counters == StreamCounters(max(seq_set), len(seq_set), len(extra))
    assert counters.gaps == max(seq_set) - len(seq_set)
