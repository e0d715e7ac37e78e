"""Hardware drivers end to end: a gateway process reading 1-Wire probes and a Modbus bus.

Every part is real except the hardware: a fake sysfs tree of DS18B20
`w1_slave` files that the test rewrites, and a pymodbus RTU server on the
far end of a pty null-modem. The gateway process reads both, applies report
by exception, stores, publishes to a real mosquitto; a real consumer writes
SQLite. The checks: suppressed readings never reach the consumer and leave
no seq gap, are counted apart from the drops in `status`, and a Modbus slave
that goes silent is counted while the other slave keeps being read.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import Mosquitto
from tests.support.modbus_server import BAUD, RtuServer
from tests.support.null_modem import NullModem
from tests.support.procs import Service
from tests.support.rig import run_cli
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PROBE = "28-000000000001"
W1_TEXT = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t={milli}\n"


class SensorRig:
    """Broker, consumer and a gateway with a w1 device and a modbus bus."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sysfs = workdir / "w1"
        (self.sysfs / PROBE).mkdir(parents=True)
        self.set_probe(20000)
        self.cable = NullModem()
        self.slaves = RtuServer(self.cable.b)
        self.broker = Mosquitto(workdir / "broker")
        self.broker.start()
        self.db = workdir / "consumer.sqlite"
        consumer_yaml = workdir / "consumer.yaml"
        consumer_yaml.write_text(f"""version: 1
broker:
  url: {self.broker.url}
  client_id: consumer-sensors
  subscribe: gw/gw-sensors/#
database: {self.db}
commit_interval: 50ms
""")
        self.gateway_yaml = workdir / "gateway.yaml"
        self.gateway_yaml.write_text(f"""version: 1
gateway:
  id: gw-sensors
  state_dir: {workdir / 'state'}
  summary_interval: 1s
broker:
  url: {self.broker.url}
store:
  commit_interval: 50ms
devices:
  - id: soil
    driver: w1
    interval: 1s
    base_dir: {self.sysfs}
    probes:
      - {{id: {PROBE}, field: bed_c}}
    streams:
      - {{name: bed, field: bed_c, unit: "°C", delivery: at-least-once, deadband: 0.5}}
  - id: meters
    driver: modbus
    port: {self.cable.a}
    baudrate: {BAUD}
    timeout: 200ms
    retries: 0
    backoff_max: 2s
    interval: 200ms
    registers:
      - {{field: voltage_v, slave: 1, address: 0, type: float32}}
      - {{field: energy_kwh, slave: 2, table: input, address: 5, type: uint32,
          word_order: little, scale: 0.01}}
    streams:
      - {{name: voltage, field: voltage_v, unit: V, delivery: at-least-once, deadband: 1%,
          max_interval: 1s}}
      - {{name: energy, field: energy_kwh, unit: kWh, delivery: exactly-once}}
""")
        self.consumer = Service("consume", consumer_yaml, workdir, "consumer")
        self.gateway = Service("run", self.gateway_yaml, workdir, "gateway")

    def set_probe(self, milli: int) -> None:
        path = self.sysfs / PROBE / "w1_slave"
        tmp = path.with_suffix(".new")
        tmp.write_text(W1_TEXT.format(milli=milli), encoding="ascii")
        tmp.replace(path)  # a reader sees the old or the new file, never half of one

    def rows(self, stream: str) -> list[tuple[int, Any]]:
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db) as conn:
            try:
                found = conn.execute("SELECT seq, value FROM readings WHERE stream = ? ORDER BY seq",
                                     (stream,)).fetchall()
            except sqlite3.OperationalError:  # the consumer has not created its tables yet
                return []
        return [(seq, json.loads(value)) for seq, value in found]

    def counters(self) -> dict[str, tuple[int, int, int]]:
        with sqlite3.connect(self.db) as conn:
            return {stream: (max_seq, received, gaps) for stream, max_seq, received, gaps in
                    conn.execute("SELECT stream, max_seq, received, gaps FROM stream_counters")}

    def status(self) -> dict[str, Any]:
        done = run_cli("status", "--config", str(self.gateway_yaml), "--json", cwd=self.workdir)
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    def close(self) -> None:
        self.gateway.ensure_stopped()
        self.consumer.ensure_stopped()
        self.broker.stop()
        self.slaves.stop()
        self.cable.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SensorRig]:
    made = SensorRig(tmp_path)
    yield made
    made.close()


def test_probes_and_modbus_end_to_end_with_report_by_exception(rig: SensorRig) -> None:
    rig.consumer.start()
    rig.consumer.wait_log(r"subscribed to")
    rig.gateway.start()
    rig.gateway.wait_log(r"device=soil up")
    rig.gateway.wait_log(r"device=meters up")

    wait_for(lambda: rig.rows("bed") == [(1, 20.0)], timeout=20, what="the first probe value")
    rig.set_probe(20250)  # within the 0.5 °C deadband: suppressed
    wait_for(lambda: rig.status()["suppressed"].get("soil/bed", 0) >= 2, timeout=20,
             what="suppressed probe readings counted")
    rig.set_probe(85000)  # the DS18B20's power-on value: rejected
    wait_for(lambda: rig.status()["drops"].get("w1_power_on_value", 0) >= 1, timeout=20,
             what="the power-on value rejected")
    rig.set_probe(21000)
    wait_for(lambda: len(rig.rows("bed")) == 2, timeout=20, what="the change beyond the deadband")

    # The voltage never changes: only the 1 s heartbeat passes, the 200 ms polls between are suppressed.
    wait_for(lambda: len(rig.rows("voltage")) >= 3, timeout=20, what="three voltage heartbeats")
    wait_for(lambda: len(rig.rows("energy")) >= 5, timeout=20, what="energy readings")

    rig.cable.muted.add(2)
    wait_for(lambda: rig.status()["drops"].get("modbus_no_response", 0) >= 2, timeout=20,
             what="slave 2 unanswered polls counted")
    voltage_before = len(rig.rows("voltage"))
    wait_for(lambda: len(rig.rows("voltage")) >= voltage_before + 2, timeout=20,
             what="slave 1 still read while slave 2 is silent")
    rig.gateway.wait_log(r"slave=2 not answering")

    assert rig.gateway.terminate() == 0
    status = rig.status()
    assert "suppressed" not in status["drops"]
    assert status["suppressed"]["meters/voltage"] >= 5
    text = run_cli("status", "--config", str(rig.gateway_yaml), cwd=rig.workdir).stdout
    assert "suppressed by report by exception (not lost): meters/voltage " in text, text
    streams = {(s["device"], s["stream"]): s["last_seq"] for s in status["streams"]}
    wait_for(lambda: {k: v[0] for k, v in rig.counters().items()} == {
        "bed": streams[("soil", "bed")], "voltage": streams[("meters", "voltage")],
        "energy": streams[("meters", "energy")]}, timeout=20, what="the consumer caught up")
    for stream, (max_seq, received, gaps) in rig.counters().items():
        assert (received, gaps) == (max_seq, 0), stream  # suppressed readings left no gap
    assert rig.rows("bed") == [(1, 20.0), (2, 21.0)]
    assert {value for _, value in rig.rows("voltage")} == {230.5}
    assert {value for _, value in rig.rows("energy")} == {1234.56}
    assert rig.gateway.log_text().count("slave=2 not answering") == 1
    assert re.search(r"summary: read \d+, stored \d+, acknowledged \d+, at-most-once sent \d+, "
                     r"rejected input \d+( \([^)]*\))?, dropped readings \d+( \([^)]*\))?, "
                     r"suppressed [1-9]\d*;", rig.gateway.log_text())
    assert "No response received" not in rig.gateway.log_text()
