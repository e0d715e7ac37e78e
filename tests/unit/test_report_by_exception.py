"""Report by exception: the pure filter, its config keys, and DeviceSink applying it before seqs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.base import Record
from devices.registry import DRIVERS
from gateway.config.common import ConfigError
from gateway.config.gateway_config import load_gateway_config
from gateway.core.clock import MemoryClock, Unsynced
from gateway.core.identity import SequenceCounters
from gateway.core.report_by_exception import Deadband, ExceptionFilter, ReportPolicy, parse_deadband
from gateway.edge.ingest import COMMIT_BOUND, PACE_READINGS, SUPPRESSED, DeviceSink, Intake


def sent(policy: ReportPolicy, readings: list[tuple[float, object]]) -> list[tuple[float, object]]:
    gate = ExceptionFilter(policy)
    return [(ts, value) for ts, value in readings if gate.admit(ts, value)]


def test_absolute_deadband_sends_only_moves_beyond_it() -> None:
    readings = [(0, 20.0), (1, 20.3), (2, 20.5), (3, 20.51), (4, 20.1), (5, 19.49)]
    assert sent(ReportPolicy(Deadband(0.5)), readings) == [(0, 20.0), (3, 20.51), (5, 19.49)]


def test_percent_deadband_is_relative_to_the_last_sent_value() -> None:
    readings = [(0, 1000), (1, 1019), (2, 1021), (3, 1040), (4, 1042)]
    assert sent(ReportPolicy(Deadband(2, percent=True)), readings) == [(0, 1000), (2, 1021), (4, 1042)]


def test_percent_deadband_around_zero_sends_any_change() -> None:
    assert sent(ReportPolicy(Deadband(5, percent=True)), [(0, 0), (1, 0), (2, 0.001)]) == [
        (0, 0), (2, 0.001)]


def test_max_interval_sends_an_unchanged_value_as_heartbeat() -> None:
    policy = ReportPolicy(Deadband(1.0), max_interval=60.0)
    readings = [(t, 5.0) for t in range(0, 200, 10)]
    assert [ts for ts, _ in sent(policy, readings)] == [0, 60, 120, 180]


def test_min_interval_thins_out_changes() -> None:
    readings = [(t * 0.5, float(t)) for t in range(10)]
    assert [ts for ts, _ in sent(ReportPolicy(min_interval=2.0), readings)] == [0, 2.0, 4.0]


def test_min_interval_wins_over_the_deadband() -> None:
    policy = ReportPolicy(Deadband(0.1), min_interval=10.0)
    assert sent(policy, [(0, 1.0), (5, 9.0), (10, 9.0), (11, 50.0)]) == [(0, 1.0), (10, 9.0)]


def test_non_numbers_are_sent_when_they_change() -> None:
    readings = [(0, False), (1, False), (2, True), (3, True), (4, "x"), (5, "x"), (6, 1), (7, True)]
    assert sent(ReportPolicy(Deadband(0)), readings) == [(0, False), (2, True), (4, "x"), (6, 1),
                                                         (7, True)]


def test_a_clock_set_back_restarts_the_rules() -> None:
    assert sent(ReportPolicy(Deadband(10), min_interval=5), [(100, 1.0), (50, 1.0), (52, 1.0)]) == [
        (100, 1.0), (50, 1.0)]


def test_huge_integers_compare_without_overflow() -> None:
    assert sent(ReportPolicy(Deadband(1)), [(0, 10**400), (1, 10**400), (2, 1)]) == [
        (0, 10**400), (2, 1)]


@pytest.mark.parametrize(("raw", "expected"), [
    (0, Deadband(0)), (0.5, Deadband(0.5)), ("2%", Deadband(2, True)), (" 0.5 % ", Deadband(0.5, True)),
    (-1, None), ("2", None), ("%", None), (True, None), (float("nan"), None), ([1], None),
])
def test_parse_deadband(raw: object, expected: Deadband | None) -> None:
    assert parse_deadband(raw) == expected


GATEWAY = """\
version: 1
gateway:
  id: gw1
devices:
  - id: climate
    driver: simulator
    streams:
      - name: temperature
        field: temp_c
        delivery: {delivery}
{extra}"""


def load(tmp_path: Path, extra: str, delivery: str = "at-least-once") -> object:
    path = tmp_path / "gw.yaml"
    path.write_text(GATEWAY.format(extra=extra, delivery=delivery), encoding="utf-8")
    return load_gateway_config(path, DRIVERS)


def test_config_reads_the_three_keys(tmp_path: Path) -> None:
    config = load(tmp_path, "        deadband: 2%\n        min_interval: 1s\n        max_interval: 5m\n")
    stream = config.devices[0].streams[0]  # type: ignore[attr-defined]
    assert stream.report == ReportPolicy(Deadband(2, True), 1.0, 300.0)


def test_config_without_the_keys_reports_everything(tmp_path: Path) -> None:
    stream = load(tmp_path, "").devices[0].streams[0]  # type: ignore[attr-defined]
    assert stream.report == ReportPolicy() and not stream.report.active


def test_max_interval_below_min_interval_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "        min_interval: 10s\n        max_interval: 5s\n")
    [problem] = caught.value.problems
    assert problem.path == "devices[0].streams[0].max_interval"
    assert "at least min_interval (10s)" in problem.expected and problem.line == 12


def make_sink(tmp_path: Path, extra: str, delivery: str = "at-least-once") -> tuple[DeviceSink, Intake]:
    config = load(tmp_path, extra, delivery)
    intake = Intake(config, "epoch1", SequenceCounters())  # type: ignore[arg-type]
    device = config.devices[0]  # type: ignore[attr-defined]
    return DeviceSink(device, intake, {"temperature": "gw/gw1/climate/temperature"}), intake


def test_device_sink_suppresses_before_readings_exist(tmp_path: Path) -> None:
    sink, intake = make_sink(tmp_path, "        deadband: 0.5\n        max_interval: 1m\n")
    for ts, value in [(0, 20.0), (1, 20.2), (2, 20.6), (3, 20.7), (70, 20.7)]:
        sink.record(Record(ts=1000.0 + ts, fields={"temp_c": value}))
    assert [r.value for r in intake.pending] == [20.0, 20.6, 20.7]
    assert intake.read == 3
    assert intake.drops == {(SUPPRESSED, "climate", "temperature"): 2}
    assert (intake.suppressed_total, intake.dropped_total) == (2, 0)


def test_suppressed_at_most_once_readings_take_no_seq(tmp_path: Path) -> None:
    sink, intake = make_sink(tmp_path, "        deadband: 1\n", delivery="at-most-once")
    for ts, value in enumerate([1.0, 1.5, 3.0, 3.2, 5.0]):
        sink.record(Record(ts=float(ts), fields={"temp_c": value}))
    assert len(intake.volatile) == 3
    seqs = [b'"seq":1', b'"seq":2', b'"seq":3']
    for item, seq in zip(intake.volatile, seqs, strict=True):
        assert seq in item.payload.replace(b" ", b"")


def test_a_partial_record_without_the_field_is_not_a_missing_field(tmp_path: Path) -> None:
    sink, intake = make_sink(tmp_path, "")
    sink.record(Record(ts=1.0, fields={"other": 1}, partial=True))
    sink.record(Record(ts=2.0, fields={"other": 1}))
    assert intake.drops == {("missing_field", "climate", "temperature"): 1}


def test_readings_before_the_clock_sync_carry_their_monotonic_time_and_boot(tmp_path: Path
                                                                             ) -> None:
    sink, intake = make_sink(tmp_path, "")
    clock = MemoryClock(1_600_000_000.0)
    intake.clock = clock
    sink.record(Record(ts=clock.wall() - 0.5, fields={"temp_c": 20.0}))
    clock.advance(3)
    clock.sync(1e8)
    sink.record(Record(ts=clock.wall(), fields={"temp_c": 21.0}))
    assert [r.taken for r in intake.pending] == [Unsynced(99.5, "boot-1"), None]


def test_an_at_most_once_reading_before_the_sync_is_marked_unsynced(tmp_path: Path) -> None:
    sink, intake = make_sink(tmp_path, "", delivery="at-most-once")
    intake.clock = MemoryClock(1_600_000_000.0)
    sink.record(Record(ts=1_600_000_000.0, fields={"temp_c": 20.0}))
    [item] = intake.volatile
    assert json.loads(item.payload)["ts_quality"] == "unsynced"


def test_commit_pacing_waits_for_readings_at_low_rates_but_never_past_the_bound(
        tmp_path: Path) -> None:
    sink, intake = make_sink(tmp_path, "")
    assert intake.commit_due(0.0, 0.2)  # nothing waits: acknowledgements alone go at once
    for value in (20.0, 21.0):
        sink.record(Record(ts=1000.0, fields={"temp_c": value}))
    committed = [t / 10 for t in range(0, 20, 2) if intake.commit_due(t / 10, 0.2)]
    # First seen at 0.0; a reading may have come a tick before and is written a tick after
    # the commit's tick: the commit is the latest tick that keeps it within the bound.
    assert committed[0] == pytest.approx(COMMIT_BOUND - 0.4)
    for value in range(PACE_READINGS):
        sink.record(Record(ts=1000.0, fields={"temp_c": float(value)}))
    assert intake.commit_due(5.0, 0.2)  # enough readings: no wait
    intake.pending = intake.pending[:2]
    assert intake.commit_due(9.0, 0.5)  # a commit_interval of half the bound or more: no pacing
