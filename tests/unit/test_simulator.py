"""Simulator: the climate model, the tick schedule, its config keys and the driver."""

from __future__ import annotations

import itertools
import statistics
import textwrap
import time

import pytest

from devices.simulator import (
    FIELDS,
    SimulatedClimate,
    SimulatorOptions,
    TickSchedule,
    offered_fields,
    read_options,
    start,
)
from gateway.config.reader import MapReader, Problem
from gateway.config.yaml_source import load_located
from tests.support.recording_sink import RecordingSink, running
from tests.support.waiting import wait_for

# -- the model ----------------------------------------------------------------


def test_same_seed_gives_same_samples_and_other_seeds_differ() -> None:
    a, b, c = SimulatedClimate(7), SimulatedClimate(7), SimulatedClimate(8)
    run_a = [a.sample() for _ in range(50)]
    assert run_a == [b.sample() for _ in range(50)]
    assert run_a != [c.sample() for _ in range(50)]


def test_samples_stay_in_range_and_are_typed() -> None:
    climate = SimulatedClimate(seed=1)
    samples = [climate.sample() for _ in range(5000)]
    temps = [s["temp_c"] for s in samples]
    humidities = [s["humidity_pct"] for s in samples]
    for sample in samples:
        assert set(sample) == FIELDS
        assert isinstance(sample["alarm"], bool)
        assert sample["temp_c"] == round(sample["temp_c"], 2)
        assert sample["humidity_pct"] == round(sample["humidity_pct"], 2)
    assert all(15.0 <= t <= 27.0 for t in temps)
    assert all(0.0 <= h <= 100.0 for h in humidities)
    assert 19.0 < statistics.mean(temps) < 23.0
    assert max(abs(x - y) for x, y in itertools.pairwise(temps)) < 1.0
    assert len(set(temps)) > 50  # it does wander


def test_counter_counts_from_one_and_alarm_is_rare() -> None:
    climate = SimulatedClimate(seed=3)
    samples = [climate.sample() for _ in range(5000)]
    assert [s["counter"] for s in samples] == list(range(1, 5001))
    alarms = sum(1 for s in samples if s["alarm"])
    assert 10 <= alarms <= 120


# -- the schedule -------------------------------------------------------------


def test_late_wakeups_do_not_drift() -> None:
    schedule = TickSchedule(0.5, start=100.0)
    now = 100.01  # every wake-up, the first included, is 10 ms late
    for _ in range(1000):
        delay = schedule.wait_after_tick(now)
        assert delay == pytest.approx(0.49)
        now += delay + 0.01
    assert schedule.next_tick == pytest.approx(100.0 + 1000 * 0.5)


def test_falling_far_behind_restarts_the_grid_instead_of_bursting() -> None:
    schedule = TickSchedule(1.0, start=0.0)
    assert schedule.wait_after_tick(60.0) == 0.0
    assert schedule.wait_after_tick(60.0) == pytest.approx(1.0)


def test_schedule_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        TickSchedule(0.0, start=0.0)


# -- config -------------------------------------------------------------------


def read(yaml_text: str) -> tuple[SimulatorOptions | None, list[str]]:
    root, errors = load_located(textwrap.dedent(yaml_text))
    assert root is not None
    assert errors == []
    problems: list[Problem] = []
    options = read_options(MapReader(root, "devices[1]", "gw.yaml", problems))
    return options, [str(problem) for problem in problems]


def test_defaults_and_keys() -> None:
    assert read("driver: simulator\n") == (SimulatorOptions(interval=1.0, seed=None), [])
    assert read("interval: 250ms\nseed: 42\n") == (SimulatorOptions(interval=0.25, seed=42), [])
    assert offered_fields(SimulatorOptions()) == FIELDS


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [("interval: 0\n", "devices[1].interval"), ("interval: soon\n", "devices[1].interval"),
     ("seed: abc\n", "devices[1].seed")],
)
def test_bad_keys_are_reported(yaml_text: str, path: str) -> None:
    options, problems = read(yaml_text)
    assert options is None
    assert len(problems) == 1
    assert f"gw.yaml:1: {path}: expected" in problems[0]


# -- the driver ---------------------------------------------------------------


def test_driver_emits_records_every_interval_until_cancelled() -> None:
    sink = RecordingSink()
    started = time.time()
    with running(start("sim", SimulatorOptions(interval=0.005, seed=5)), sink):
        wait_for(lambda: len(sink.snapshot()[0]) >= 10, timeout=5, what="10 records")
    records, states, rejects = sink.snapshot()
    assert states == [(True, "simulator started")]
    assert rejects == []
    expected = SimulatedClimate(5)
    for record in records:
        assert record.fields == expected.sample()
        assert started <= record.ts <= time.time()
    assert [r.ts for r in records] == sorted(r.ts for r in records)
