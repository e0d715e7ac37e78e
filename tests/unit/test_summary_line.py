"""The summary line names rejected input and dropped readings apart, by reason, on one line;
the reconnect delay is capped so a returning broker is found within seconds."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from devices.base import Record
from devices.registry import DRIVERS
from gateway.config.gateway_config import load_gateway_config
from gateway.core.backoff import Backoff
from gateway.core.identity import SequenceCounters
from gateway.edge.ingest import DeviceSink, Intake
from gateway.edge.summary import LOST, MAX_REASONS, by_reason, figures, split_drops, summary_line
from gateway.mqtt.link import RECONNECT_CAP

CONFIG = """\
version: 1
gateway: {id: gw1}
broker: {url: "mqtt://127.0.0.1:1883"}
devices:
  - id: climate
    driver: simulator
    streams:
      - {name: temperature, field: temp_c, delivery: at-least-once}
"""


def test_rejected_input_and_dropped_readings_are_named_apart_by_reason() -> None:
    f = figures(20, 13, 10, 0, Counter({"bad_json": 3, "not_an_object": 2}),
                Counter({"store_full": 2}), 0)
    line = summary_line(f, 3, "connected")
    assert line == ("summary: read 20, stored 13, acknowledged 10, at-most-once sent 0, "
                    "rejected input 5 (bad_json 3, not_an_object 2), dropped readings 2 "
                    "(store_full 2); backlog up to 3; broker connected")
    assert "\n" not in line


def test_nothing_lost_says_zero_and_many_reasons_are_bounded() -> None:
    assert by_reason(()) == "0"
    assert by_reason((("store_full", 0),)) == "0"
    many = tuple((f"reason_{k}", k + 1) for k in range(MAX_REASONS + 3))
    text = by_reason(many)
    assert text.count(",") == MAX_REASONS  # MAX_REASONS shown, then "other"
    assert text.startswith(f"{sum(n for _, n in many)} (reason_{MAX_REASONS + 2} ")
    assert "other 6)" in text  # reasons 0, 1, 2 hold 1 + 2 + 3


def test_suppressed_values_are_shown_apart_from_both() -> None:
    line = summary_line(figures(5, 2, 2, 0, Counter(), Counter(), 3), 0, "unreachable for 4s")
    assert "rejected input 0, dropped readings 0, suppressed 3; backlog up to 0; broker unreachable " \
           "for 4s" in line


def test_intake_counts_device_rejects_as_input_and_buffer_overflow_as_readings(
        tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    config = load_gateway_config(path, DRIVERS)
    intake = Intake(config, "epoch1", SequenceCounters())
    sink = DeviceSink(config.devices[0], intake, {"temperature": "gw/gw1/climate/temperature"})
    sink.rejected("bad_json", "line 1: not JSON")
    sink.rejected("bad_json", "line 2: not JSON")
    sink.record(Record(ts=1.0, fields={"other": 1}))  # missing_field
    intake.drop("at_most_once_buffer_full", "climate", "temperature")
    assert intake.rejected_by == {"bad_json": 2, "missing_field": 1}
    assert intake.dropped_by == {"at_most_once_buffer_full": 1}
    assert (intake.rejected_total, intake.dropped_total) == (3, 1)
    # The store still gets every count under its reason (status, metrics).
    assert sum(intake.drops.values()) == 4


def test_reconnect_delays_never_exceed_five_seconds() -> None:
    assert RECONNECT_CAP <= 5.0
    backoff = Backoff(base=0.5, cap=RECONNECT_CAP, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    assert max(delays) <= RECONNECT_CAP
    assert min(delays[10:]) >= RECONNECT_CAP / 2  # jittered, but not hammering the broker


def test_status_splits_the_stores_drops_the_same_way() -> None:
    rejected, dropped = split_drops({"bad_json": 3, "store_full": 2, "missing_field": 1,
                                     "at_most_once_buffer_full": 4})
    assert rejected == {"bad_json": 3, "missing_field": 1}
    assert dropped == {"store_full": 2, "at_most_once_buffer_full": 4}


def test_every_reason_a_reading_is_dropped_for_is_counted_as_lost() -> None:
    root = Path(__file__).resolve().parents[2] / "gateway"
    source = "\n".join(p.read_text() for p in root.rglob("*.py"))
    reasons = set(re.findall(r'\.drop\("([a-z_]+)"', source))
    reasons |= set(re.findall(r'_refuse\([^)]*"([a-z_]+)"', source))
    reasons |= set(re.findall(r'reason = "([a-z_]+)" if disk_full else "([a-z_]+)"', source)[0])
    assert {"too_large", "at_most_once_buffer_full", "store_full", "disk_full",
            "store_error", "shutdown"} <= reasons
    assert reasons <= LOST
