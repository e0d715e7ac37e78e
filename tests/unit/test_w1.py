"""The w1 driver against a fake sysfs tree: CRC, power-on value, absent probes, the poll loop."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from devices.base import Rejected
from devices.w1 import (
    W1_ABSENT,
    W1_BAD_FORMAT,
    W1_CRC_ERROR,
    W1_POWER_ON_VALUE,
    Probe,
    W1Options,
    W1Poller,
    parse_w1_slave,
    start,
)
from tests.support.recording_sink import RecordingSink, running
from tests.support.waiting import wait_for

GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
BAD_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
NEGATIVE = "5e ff 4b 46 7f ff 02 10 d7 : crc=d7 YES\n5e ff 4b 46 7f ff 02 10 d7 t=-10125\n"


def test_a_good_reading() -> None:
    assert parse_w1_slave(GOOD) == 23.125
    assert parse_w1_slave(NEGATIVE) == -10.125


@pytest.mark.parametrize(("text", "reason"), [
    (BAD_CRC, W1_CRC_ERROR),
    (POWER_ON, W1_POWER_ON_VALUE),
    ("", W1_BAD_FORMAT),
    (GOOD.splitlines()[0], W1_BAD_FORMAT),
    (GOOD.replace("t=23125", "t="), W1_BAD_FORMAT),
    (GOOD.replace("t=23125", "t=200000"), W1_BAD_FORMAT),
    (GOOD.replace("crc=57 YES", "crc=57"), W1_BAD_FORMAT),
    (GOOD + "extra\n", W1_BAD_FORMAT),
])
def test_bad_readings_are_rejected_with_their_reason(text: str, reason: str) -> None:
    result = parse_w1_slave(text)
    assert isinstance(result, Rejected) and result.reason == reason, result


def write_probe(base: Path, probe_id: str, text: str) -> None:
    (base / probe_id).mkdir(parents=True, exist_ok=True)
    (base / probe_id / "w1_slave").write_text(text, encoding="ascii")


def test_poller_reads_good_probes_and_counts_the_rest(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    probes = (Probe("28-000000000001", "a_c"), Probe("28-000000000002", "b_c"),
              Probe("28-000000000003", "c_c"), Probe("28-000000000004", "d_c"))
    write_probe(tmp_path, probes[0].id, GOOD)
    write_probe(tmp_path, probes[1].id, BAD_CRC)
    write_probe(tmp_path, probes[2].id, POWER_ON)
    sink = RecordingSink()
    poller = W1Poller(W1Options(probes, 1.0, str(tmp_path)), sink)
    with caplog.at_level(logging.WARNING, logger="devices.w1"):
        assert poller.poll() == {"a_c": 23.125}
        assert poller.poll() == {"a_c": 23.125}
    assert sink.reject_counts == {W1_CRC_ERROR: 2, W1_POWER_ON_VALUE: 2, W1_ABSENT: 2}
    absent_logs = [r for r in caplog.records if "absent" in r.getMessage()]
    assert len(absent_logs) == 1 and "28-000000000004" in absent_logs[0].getMessage()
    write_probe(tmp_path, probes[3].id, NEGATIVE)
    assert poller.poll()["d_c"] == -10.125
    assert poller.absent == set()


def test_driver_loop_emits_partial_records(tmp_path: Path) -> None:
    write_probe(tmp_path, "28-0316a2795aff", GOOD)
    options = W1Options((Probe("28-0316a2795aff", "soil_c"), Probe("28-0316a2795a00", "air_c")),
                        1.0, str(tmp_path))
    sink = RecordingSink()
    with running(start("soil", options), sink):
        wait_for(lambda: len(sink.fields) >= 2, what="two polls")
    records, states, _ = sink.snapshot()
    assert all(r.partial and dict(r.fields) == {"soil_c": 23.125} for r in records)
    assert states[0][0] is True
    assert sink.reject_counts[W1_ABSENT] >= 2
