"""The consumer's per-stream counters: first contact, fresh, duplicates, gaps, in any order."""

from __future__ import annotations

import random
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.dedup import StreamCounters, StreamDelta, StreamId, fold

A: StreamId = ("gw", "E1", "climate", "temperature")
B: StreamId = ("gw", "E1", "climate", "humidity")
ZERO = StreamCounters()


def arrive(seqs: list[int]) -> list[tuple[StreamId, int, bool]]:
    """Outcomes as the database gives them: fresh the first time an identity is seen."""
    seen: set[int] = set()
    outcomes = []
    for seq in seqs:
        outcomes.append((A, seq, seq not in seen))
        seen.add(seq)
    return outcomes


def test_fold_keeps_fresh_seqs_and_counts_duplicates_per_stream() -> None:
    deltas = fold([(A, 1, True), (A, 3, True), (A, 1, False), (B, 5, True), (A, 2, True),
                   (B, 5, False)])
    assert deltas == {A: StreamDelta(fresh=[1, 3, 2], duplicates=1),
                      B: StreamDelta(fresh=[5], duplicates=1)}


def test_fold_of_nothing_is_empty() -> None:
    assert fold([]) == {}


def test_a_stream_seen_from_seq_1_counts_gaps_from_1() -> None:
    counters = ZERO.plus(fold([(A, 1, True), (A, 2, True), (A, 5, True)])[A])
    assert counters == StreamCounters(first_seq=1, max_seq=5, received=3)
    assert counters.gaps == 2
    later = counters.plus(fold([(A, 3, True), (A, 4, True), (A, 4, False)])[A])
    assert later == StreamCounters(first_seq=1, max_seq=5, received=5, duplicates=1)
    assert later.gaps == 0


def test_first_contact_late_in_a_stream_is_not_a_gap() -> None:
    counters = ZERO.plus(fold([(A, 196, True), (A, 197, True)])[A])
    assert counters.first_seq == 196 and counters.gaps == 0
    assert counters.plus(fold([(A, 200, True)])[A]).gaps == 2


def test_history_below_first_contact_fills_in_and_is_neither_duplicate_nor_gap() -> None:
    counters = ZERO.plus(fold([(A, 50, True), (A, 52, True)])[A])
    assert counters.gaps == 1
    filled = counters.plus(fold([(A, 10, True), (A, 11, True)])[A])
    assert filled == StreamCounters(first_seq=50, max_seq=52, received=4, duplicates=0,
                                    before_first=2)
    assert filled.gaps == 1, "the gap above first contact is still there, no new ones below"


def test_duplicates_only_leave_the_seqs_alone() -> None:
    counters = StreamCounters(first_seq=1, max_seq=10, received=10)
    assert counters.plus(StreamDelta(duplicates=2)) == StreamCounters(1, 10, 10, 2)


def test_no_contact_yet_has_no_gaps() -> None:
    assert ZERO.gaps == 0
    assert ZERO.plus(StreamDelta(duplicates=3)) == StreamCounters(duplicates=3)


@given(
    seq_set=st.sets(st.integers(min_value=1, max_value=2**62), min_size=1, max_size=40),
    extra=st.lists(st.integers(min_value=0, max_value=39), max_size=40),
    shuffle_seed=st.integers(),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=5),
)
def test_counters_do_not_depend_on_duplicates_or_batching(
    seq_set: set[int], extra: list[int], shuffle_seed: int, cuts: list[int]
) -> None:
    ordered = sorted(seq_set)
    arrivals = ordered + [ordered[i % len(ordered)] for i in extra]  # every seq, some twice or more
    random.Random(shuffle_seed).shuffle(arrivals)
    outcomes = arrive(arrivals)
    counters = ZERO
    batches = []
    bounds = [0, *sorted(c % (len(outcomes) + 1) for c in cuts), len(outcomes)]
    for start, end in pairwise(bounds):
        delta = fold(outcomes[start:end]).get(A)
        if delta is not None:
            counters = counters.plus(delta)
            batches.append(delta)
    first_batch = next(d for d in batches if d.fresh)
    first = min(first_batch.fresh)
    assert counters.first_seq == first
    assert counters.max_seq == max(seq_set)
    assert counters.received == len(seq_set)
    assert counters.duplicates == len(extra)
    assert counters.before_first == sum(1 for s in seq_set if s < first)
    above = [s for s in seq_set if s >= first]
    assert counters.gaps == max(seq_set) - first + 1 - len(above)


@given(seqs=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=60),
       cut=st.integers(min_value=1, max_value=60))
def test_gaps_are_the_seqs_missing_above_first_contact(seqs: list[int], cut: int) -> None:
    outcomes = arrive(seqs)
    cut = min(cut, len(outcomes))
    counters = ZERO
    for part in (outcomes[:cut], outcomes[cut:]):
        delta = fold(part).get(A)
        if delta is not None:
            counters = counters.plus(delta)
    first = min(seqs[:cut])
    seen = set(seqs)
    expected = sum(1 for s in range(first, max(seen) + 1) if s not in seen)
    assert counters.gaps == expected


def test_seqs_the_gateway_dropped_are_not_gaps_and_are_counted_once() -> None:
    counters = StreamCounters(first_seq=1, max_seq=10, received=6)
    assert counters.gaps == 4
    part = counters.dropped_range(3, 6)
    assert part == (3, 6)
    counters = counters.with_dropped(6, 3)  # seq 5 of 3..6 had arrived
    assert (counters.dropped_by_gateway, counters.gaps) == (3, 1)
    assert counters.dropped_range(3, 6) is None  # the same notice again: nothing new
    assert counters.dropped_range(2, 8) == (7, 8)  # only above what was counted
    assert StreamCounters(first_seq=5).dropped_range(1, 6) == (5, 6)  # from first contact
