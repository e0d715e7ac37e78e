"""Reading identity: per-stream sequence counters and epoch names (docs/contracts.md, "Reading identity")."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.envelope import MAX_SEQ
from gateway.core.identity import SequenceCounters, new_epoch

TEMP = ("climate", "temperature")
ALARM = ("climate", "alarm")
PULSES = ("meter", "pulses")


def test_each_stream_starts_at_1() -> None:
    counters = SequenceCounters()
    assert counters.last(TEMP) == 0
    assert counters.next(TEMP) == 1
    assert counters.next(ALARM) == 1
    assert counters.next(PULSES) == 1


def test_streams_count_independently() -> None:
    counters = SequenceCounters()
    assert [counters.next(TEMP) for _ in range(3)] == [1, 2, 3]
    assert counters.next(ALARM) == 1
    assert counters.next(TEMP) == 4
    assert (counters.last(TEMP), counters.last(ALARM), counters.last(PULSES)) == (4, 1, 0)
    assert dict(counters.items()) == {TEMP: 4, ALARM: 1}


def test_same_stream_name_on_two_devices_is_two_streams() -> None:
    counters = SequenceCounters()
    counters.next(("a", "temperature"))
    assert counters.next(("b", "temperature")) == 1


def test_counters_continue_from_stored_values() -> None:
    counters = SequenceCounters({TEMP: 41})
    assert counters.next(TEMP) == 42
    assert counters.next(ALARM) == 1


def test_take_dirty_returns_changed_counters_once_sorted() -> None:
    counters = SequenceCounters({PULSES: 7})
    assert counters.take_dirty() == []  # loaded values are not changes
    counters.next(TEMP)
    counters.next(TEMP)
    counters.next(ALARM)
    assert counters.take_dirty() == [(ALARM, 1), (TEMP, 2)]
    assert counters.take_dirty() == []
    counters.next(PULSES)
    assert counters.take_dirty() == [(PULSES, 8)]


def test_overflow_past_2_63_minus_1_raises_and_hands_out_nothing() -> None:
    counters = SequenceCounters({TEMP: MAX_SEQ - 1})
    assert counters.next(TEMP) == MAX_SEQ == 2**63 - 1
    counters.take_dirty()
    with pytest.raises(OverflowError, match="climate/temperature"):
        counters.next(TEMP)
    assert counters.last(TEMP) == MAX_SEQ
    assert counters.take_dirty() == []
    assert counters.next(ALARM) == 1  # other streams go on


@given(st.lists(st.sampled_from([TEMP, ALARM, PULSES]), max_size=60))
def test_seqs_are_never_reused(keys: list[tuple[str, str]]) -> None:
    counters = SequenceCounters()
    handed = [(key, counters.next(key)) for key in keys]
    assert len(set(handed)) == len(handed)
    for key in set(keys):
        assert [seq for k, seq in handed if k == key] == list(range(1, keys.count(key) + 1))


def test_epoch_format() -> None:
    epoch = new_epoch(1_795_726_800.9, "ab12cd")
    assert epoch == "20261126T210000Z-ab12cd"
    assert re.fullmatch(r"\d{8}T\d{6}Z-ab12cd", epoch)


@given(st.lists(st.floats(min_value=0, max_value=4e9), min_size=2, max_size=10),
       st.text(alphabet="0123456789abcdef", min_size=8, max_size=8))
def test_epochs_sort_by_start_time(times: list[float], token: str) -> None:
    whole_seconds = sorted({int(t) for t in times})
    epochs = [new_epoch(float(t), token) for t in whole_seconds]
    assert sorted(epochs) == epochs
    assert len(set(epochs)) == len(epochs)


def test_epochs_sort_by_time_across_year_and_digit_boundaries() -> None:
    times = [999_999_999.0, 1_000_000_000.0, 1_767_225_599.0, 1_767_225_600.0, 4_102_444_800.0]
    epochs = [new_epoch(t, "zzzz" if i % 2 else "0000") for i, t in enumerate(times)]
    assert sorted(epochs) == epochs
