"""Modbus decoding (words -> values) and the poll schedule with per-slave backoff, both pure."""

from __future__ import annotations

import random

import pytest

from devices.base import Rejected
from devices.modbus.decoding import (
    BAD_RESPONSE,
    BAD_VALUE,
    Decoding,
    decode_bits,
    decode_registers,
    encode_value,
)
from devices.modbus.schedule import PollSchedule


@pytest.mark.parametrize(("words", "decoding", "value"), [
    ([0xFFFF], Decoding("int16"), -1),
    ([0xFFFF], Decoding("uint16"), 65535),
    ([0x0001, 0x0002], Decoding("uint32"), 0x00010002),
    ([0x0002, 0x0001], Decoding("uint32", "little"), 0x00010002),
    ([0xFFFF, 0xFFFE], Decoding("int32"), -2),
    ([0x4148, 0x0000], Decoding("float32"), 12.5),
    ([0x0000, 0x4148], Decoding("float32", "little"), 12.5),
    ([235], Decoding("int16", scale=0.1), 23.5),
    ([1000], Decoding("uint16", scale=0.1, offset=-40), 60.0),
    ([7], Decoding("uint16", offset=3), 10),
])
def test_decoding(words: list[int], decoding: Decoding, value: float) -> None:
    assert decode_registers(words, decoding) == value
    assert type(decode_registers(words, decoding)) is type(value)


@pytest.mark.parametrize("decoding", [Decoding(t, o) for t in ("int16", "uint16", "int32", "uint32",
                                                              "float32") for o in ("big", "little")])
def test_encode_then_decode_is_the_identity(decoding: Decoding) -> None:
    raw = 12.5 if decoding.type == "float32" else (-1234 if decoding.type.startswith("int") else 1234)
    assert decode_registers(encode_value(raw, decoding), decoding) == raw


@pytest.mark.parametrize(("words", "decoding", "reason"), [
    ([1], Decoding("int32"), BAD_RESPONSE),
    ([1, 2, 3], Decoding("float32"), BAD_RESPONSE),
    ([70000], Decoding("uint16"), BAD_RESPONSE),
    ([-1], Decoding("uint16"), BAD_RESPONSE),
    ([0x7FC0, 0x0000], Decoding("float32"), BAD_VALUE),  # NaN
    ([0x7F80, 0x0000], Decoding("float32"), BAD_VALUE),  # +inf
])
def test_bad_words_are_rejected(words: list[int], decoding: Decoding, reason: str) -> None:
    result = decode_registers(words, decoding)
    assert isinstance(result, Rejected) and result.reason == reason


def test_bits() -> None:
    assert decode_bits([True, False, False]) is True
    assert isinstance(decode_bits([]), Rejected)


def test_each_point_keeps_its_own_interval() -> None:
    schedule = PollSchedule([(1, 1.0), (1, 3.0)], start=0.0)
    polled: list[tuple[float, int]] = []
    while len(polled) < 10:
        when, index = schedule.next_poll()
        polled.append((when, index))
        schedule.answered(index, when)
    assert polled == [(0.0, 0), (0.0, 1), (1.0, 0), (2.0, 0), (3.0, 0), (3.0, 1), (4.0, 0), (5.0, 0),
                      (6.0, 0), (6.0, 1)]


def test_a_late_poll_skips_missed_ticks_and_keeps_the_grid() -> None:
    schedule = PollSchedule([(1, 1.0)], start=0.0)
    schedule.answered(0, 3.4)
    assert schedule.next_poll() == (4.0, 0)


def test_a_silent_slave_backs_off_and_does_not_hold_up_the_others() -> None:
    schedule = PollSchedule([(1, 1.0), (2, 1.0)], start=0.0, backoff_base=1.0, backoff_max=8.0,
                            rng=random.Random(1))
    polls = {1: 0, 2: 0}
    now = 0.0
    while now < 60.0:
        when, index = schedule.next_poll()
        now = max(now, when)
        slave = schedule.points[index][0]
        polls[slave] += 1
        if slave == 2:
            schedule.unanswered(index, now)
            now += 0.2  # the timeout the bus spent waiting
        else:
            schedule.answered(index, now)
    assert polls[1] >= 59  # slave 1 kept its once-a-second schedule
    assert 7 <= polls[2] <= 20  # slave 2 was probed ever more rarely, capped at backoff_max
    health = schedule.slaves[2]
    assert health.silent and health.failed_polls == polls[2]
    assert schedule.answered(1, now) is True
    assert not schedule.slaves[2].silent
