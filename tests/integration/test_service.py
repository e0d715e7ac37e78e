"""The gateway and the consumer as systemd services, every part real.

sd_notify messages arrive on a real AF_UNIX datagram socket named in
$NOTIFY_SOCKET; the pipeline is stalled for real through the TCP proxy;
signals go to real processes; the metrics endpoint is scraped over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.cloud.metrics import CONSUMER_METRICS
from gateway.edge.metrics import GATEWAY_METRICS
from gateway.ops.metrics import sample_names
from tests.support.broker import Mosquitto
from tests.support.notify_socket import NotifySocket
from tests.support.ports import free_port
from tests.support.procs import REPO, Service
from tests.support.rig import Rig, run_cli
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s; a hang is called after 1 s without progress


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    """A notify socket, closed after the test."""
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def pings_after(sock: NotifySocket, moment: float) -> int:
    """WATCHDOG=1 pings received after `moment`."""
    return sum(1 for t in sock.times_of("WATCHDOG") if t > moment)


def test_gateway_ready_watchdog_stops_on_a_hung_link_and_stopping_on_sigterm(
        rig_factory: type[Rig], notify: NotifySocket) -> None:
    rig = rig_factory(via_proxy=True)
    assert rig.proxy is not None
    rig.start_consumer()
    rig.gateway.env = notify.env(WATCHDOG_USEC)
    rig.start_gateway()
    wait_for(lambda: notify.times_of("READY"), timeout=10, what="READY=1")
    ready = next(f for _, f in notify.messages() if f.get("READY") == "1")
    assert "devices" in ready["STATUS"]
    start = time.monotonic()
    wait_for(lambda: pings_after(notify, start) >= 4, timeout=10, what="watchdog pings")
    rig.send(50)
    rig.wait_delivered()

    # A hung link with readings in flight: the publisher gets no acknowledgement.
    rig.proxy.stall()
    rig.send(20)
    rig.gateway.wait_log(r"watchdog: the publisher is hung: \d+ messages in flight", timeout=15)
    stalled_at = time.monotonic()
    # Three more seconds of readings: at-most-once ones are still written into the socket
    # buffer, which is no acknowledgement of anything stored.
    rig.send(300, per_second=100)
    assert time.monotonic() - stalled_at >= 3.0
    assert pings_after(notify, stalled_at) == 0, "pings went on while the publisher was hung"

    rig.proxy.resume()
    resumed = time.monotonic()
    wait_for(lambda: pings_after(notify, resumed) >= 2, timeout=20, what="pings after resume")
    rig.gateway.wait_log(r"watchdog: progress again")
    rig.wait_delivered()

    assert rig.gateway.terminate() == 0
    stopping = notify.times_of("STOPPING")
    assert len(stopping) == 1
    assert pings_after(notify, stopping[0]) == 0


def test_gateway_keeps_pinging_while_the_broker_is_unreachable(
        rig_factory: type[Rig], notify: NotifySocket) -> None:
    rig = rig_factory(via_proxy=True, tap=False)
    assert rig.proxy is not None
    rig.gateway.env = notify.env(WATCHDOG_USEC)
    rig.start_gateway()
    wait_for(lambda: notify.times_of("READY"), timeout=10, what="READY=1")
    rig.proxy.refuse()
    rig.gateway.wait_log(r"readings are kept in the store", timeout=15)
    rig.send(20)
    refused = time.monotonic()
    # Restarting would not bring the broker back: pings go on, readings stay stored.
    wait_for(lambda: pings_after(notify, refused) >= 8, timeout=15,
             what="pings while the broker is unreachable")
    rig.wait_stored()
    assert "no longer pinging" not in rig.gateway.log_text()
    assert rig.gateway.terminate() == 0


def test_consumer_ready_watchdog_and_stopping(rig_factory: type[Rig], notify: NotifySocket) -> None:
    rig = rig_factory(tap=False)
    rig.consumer.env = notify.env(WATCHDOG_USEC)
    rig.start_consumer()
    wait_for(lambda: notify.times_of("READY"), timeout=10, what="consumer READY=1")
    start = time.monotonic()
    wait_for(lambda: pings_after(notify, start) >= 4, timeout=10, what="consumer pings")
    rig.start_gateway()
    rig.send(30)
    rig.wait_delivered()

    # Another writer holds the database: each commit waits in SQLite's busy timeout
    # (5 s) with the event loop blocked, so no ping goes out while it waits.
    lock = sqlite3.connect(rig.consumer_db, isolation_level=None, timeout=10)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        locked = time.monotonic()
        rig.send(10)
        rig.consumer.wait_log(r"commit failed \(database is locked\)", timeout=20)
    finally:
        lock.close()
    released = time.monotonic()
    rig.wait_delivered()
    wait_for(lambda: pings_after(notify, released) >= 4, timeout=15, what="pings after the lock")
    since = [t for t in notify.times_of("WATCHDOG") if t > locked]
    gaps = [b - a for a, b in zip([locked, *since], since, strict=False)]
    assert max(gaps) > 3.0, gaps  # pings every 0.5 s otherwise

    assert rig.consumer.terminate() == 0
    assert len(notify.times_of("STOPPING")) == 1


# -- SIGHUP ---------------------------------------------------------------------

def _sim_config(path: Path, state: Path, devices: list[str], url: str,
                summary: str = "1s") -> None:
    blocks = "".join(f"""  - id: {name}
    driver: simulator
    interval: 50ms
    streams:
      - {{name: t, field: temp_c, delivery: at-least-once}}
""" for name in devices)
    path.write_text(f"""version: 1
gateway:
  id: hup-gw
  state_dir: {state}
  summary_interval: {summary}
broker:
  url: {url}
store:
  commit_interval: 50ms
devices:
{blocks}""")


def _last_seq(config: Path, workdir: Path, device: str) -> int:
    done = run_cli("status", "--config", str(config), "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    for stream in json.loads(done.stdout)["streams"]:
        if stream["device"] == device:
            return int(stream["last_seq"])
    return 0


def _delivered(database: Path, device: str) -> int:
    """Readings of a device in the consumer's `readings`."""
    if not database.exists():
        return 0
    conn = sqlite3.connect(database, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM readings WHERE device = ?",
                                (device,)).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_sighup_applies_a_valid_device_map_and_rejects_a_bad_one(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", persistent=False)
    broker.start()
    database = tmp_path / "consumer.sqlite"
    consumer_yaml = tmp_path / "consumer.yaml"
    consumer_yaml.write_text(f"""version: 1
broker:
  url: {broker.url}
  client_id: consumer-hup
  subscribe: gw/#
database: {database}
commit_interval: 50ms
""")
    config = tmp_path / "gateway.yaml"
    state = tmp_path / "state"
    _sim_config(config, state, ["first"], broker.url)
    consumer = Service("consume", consumer_yaml, tmp_path, "consumer")
    gateway = Service("run", config, tmp_path, "gateway")
    try:
        consumer.start()
        consumer.wait_log(r"subscribed to gw/#")
        gateway.start()
        wait_for(lambda: _delivered(database, "first") > 5, timeout=15, interval=0.1,
                 what="readings of device first at the consumer")
        assert gateway.proc is not None

        # Valid: a second device is added, the first one stays; the gateway section's
        # change is not applied live, and the log says so.
        _sim_config(config, state, ["first", "second"], broker.url, summary="2s")
        os.kill(gateway.proc.pid, signal.SIGHUP)
        gateway.wait_log(r"reload: device map applied .*added second, removed none, changed none")
        gateway.wait_log(r"reload: the gateway settings changed .* only after a restart")
        wait_for(lambda: _delivered(database, "second") > 5, timeout=15, interval=0.1,
                 what="readings of the added device at the consumer")

        # Invalid: rejected with the messages of `check`; both devices keep producing.
        good_text = config.read_text()
        config.write_text(good_text.replace("driver: simulator", "driver: simulatorr", 1))
        check = run_cli("check", "--config", str(config), cwd=tmp_path)
        assert check.returncode == 1
        problems = [line.removeprefix("error: ") for line in check.stderr.splitlines()
                    if line.startswith("error: ")]
        assert problems
        os.kill(gateway.proc.pid, signal.SIGHUP)
        gateway.wait_log(r"reload rejected: 1 problem in .*; still running the previous config")
        log = gateway.log_text()
        for problem in problems:
            assert f"reload rejected: {problem}" in log
        marks = {d: _delivered(database, d) for d in ("first", "second")}
        wait_for(lambda: all(_delivered(database, d) > marks[d] + 10 for d in marks),
                 timeout=15, interval=0.1, what="both devices still delivering")

        # Valid again, without the first device: it stops, the second goes on.
        _sim_config(config, state, ["second"], broker.url, summary="2s")
        os.kill(gateway.proc.pid, signal.SIGHUP)
        gateway.wait_log(r"reload: device map applied .*added none, removed first")
        both = tmp_path / "both.yaml"  # the same store; `status` lists the streams it names
        _sim_config(both, state, ["first", "second"], broker.url)
        seqs = []
        for _ in range(2):  # the first mark after readings read before the reload are committed
            second = _last_seq(both, tmp_path, "second")
            wait_for(lambda: _last_seq(both, tmp_path, "second") > second + 20, timeout=15,  # noqa: B023
                     interval=0.2, what="the second device going on")
            seqs.append(_last_seq(both, tmp_path, "first"))
        assert seqs[0] > 0 and seqs[1] == seqs[0], seqs
        assert gateway.terminate() == 0
        assert consumer.terminate() == 0
    finally:
        gateway.ensure_stopped()
        consumer.ensure_stopped()
        broker.stop()


# -- metrics ----------------------------------------------------------------------

def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)] from a real HTTP scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def one(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
        **labels: str) -> float:
    """The value of one sample."""
    values = [v for found, v in samples[name] if all(found.get(k) == x for k, x in labels.items())]
    assert len(values) == 1, (name, labels, samples.get(name))
    return values[0]


def test_metrics_endpoints_count_what_was_sent(rig_factory: type[Rig]) -> None:
    gw_port, consumer_port = free_port(), free_port()
    rig = rig_factory(gateway_extra=f"metrics: {{listen: {gw_port}}}",
                      consumer_extra=f"metrics:\n  listen: 127.0.0.1:{consumer_port}")
    rig.start_consumer()
    rig.start_gateway()
    rig.gateway.wait_log(rf"metrics: Prometheus endpoint on http://127.0.0.1:{gw_port}")
    rig.send(120)
    rig.device.write_raw(b"not json\n")
    rig.device.write_raw(b"[1, 2]\n")
    rig.wait_delivered()
    wait_for(lambda: one(scrape(gw_port), "mqtt_gateway_readings_acknowledged_total") >= 240,
             timeout=15, what="240 acknowledgements in the metrics")
    wait_for(lambda: all(one(scrape(gw_port), "mqtt_gateway_backlog_readings", delivery=d) == 0
                         for d in ("at-least-once", "exactly-once")),
             timeout=15, what="empty backlog of both durable classes")

    wait_for(lambda: "mqtt_gateway_readings_dropped_total" in scrape(gw_port), timeout=15,
             what="drops committed to the store")
    gw = scrape(gw_port)
    assert sample_names(GATEWAY_METRICS) <= set(gw), sample_names(GATEWAY_METRICS) - set(gw)
    assert one(gw, "mqtt_gateway_readings_dropped_total", reason="bad_json") == 1
    assert one(gw, "mqtt_gateway_readings_dropped_total", reason="not_an_object") == 1
    assert one(gw, "mqtt_gateway_readings_read_total") == 360  # 120 lines x 3 streams
    assert one(gw, "mqtt_gateway_readings_stored_total") == 240
    assert one(gw, "mqtt_gateway_readings_acknowledged_total") == 240
    assert one(gw, "mqtt_gateway_at_most_once_sent_total") == 120
    assert one(gw, "mqtt_gateway_messages_published_total") >= 360
    assert one(gw, "mqtt_gateway_backlog_readings", delivery="exactly-once") == 0
    assert one(gw, "mqtt_gateway_broker_connected") == 1
    assert one(gw, "mqtt_gateway_store_bytes") > 0
    assert one(gw, "mqtt_gateway_disk_write_bytes_total") > 0
    count = one(gw, "mqtt_gateway_publish_latency_seconds_count")
    assert 240 // 8 - 2 <= count <= 240 // 8 + 2  # one in eight publishes is timed

    c = scrape(consumer_port)
    # Rejects are labelled by reason and none happened: that family has no sample yet.
    expected = sample_names(CONSUMER_METRICS) - {"mqtt_consumer_rejects_total"}
    assert expected <= set(c), expected - set(c)
    committed = one(c, "mqtt_consumer_readings_committed_total")
    assert committed == 360
    assert one(c, "mqtt_consumer_gaps_total") == 0
    assert one(c, "mqtt_consumer_lag_seconds_count") >= 1
    rows = rig.consumer_query("SELECT count(*) FROM readings")
    assert committed == rows[0][0]


# -- MemoryDenyWriteExecute=yes -------------------------------------------------------

MDWE = [sys.executable, str(REPO / "tests/support/mdwe.py")]


def test_gateway_and_consumer_run_under_memory_deny_write_execute(
        rig_factory: type[Rig], tmp_path: Path) -> None:
    probe = subprocess.run([*MDWE, sys.executable, "-c",
                            "import mmap; mmap.mmap(-1, 4096, prot=7)"],
                           capture_output=True, text=True, check=False)
    if probe.returncode == 3:
        pytest.skip(f"the kernel has no PR_SET_MDWE (Linux 6.3+): {probe.stderr.strip()}")
    # The rule holds: a writable and executable mapping is refused.
    assert probe.returncode == 1 and "PermissionError" in probe.stderr, probe.stderr
    rig = rig_factory(tap=False)
    rig.consumer.launcher = rig.gateway.launcher = MDWE
    rig.start_consumer()
    rig.start_gateway()
    rig.send(100)
    rig.wait_delivered()
    assert rig.gateway.terminate() == 0
    assert rig.consumer.terminate() == 0
