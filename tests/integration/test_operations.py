"""Operating the gateway for real: no broker, SIGTERM, serial garbage, unplug, configs.

Every part is real: mosquitto on a free loopback port, the gateway and the
consumer as processes, a pty as the serial port, `python -m gateway status`
and `check` as subprocesses. Each test states its proof as counts.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.ports import port_open
from tests.support.procs import REPO
from tests.support.rig import DURABLE, STREAMS, Rig, assert_durable_exact, run_cli
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

CONFIG_DIR = REPO / "config"


def backlog(status: dict[str, object], delivery: str) -> int:
    """Pending readings of one delivery class in a `status --json` report."""
    classes = status["backlog"]
    assert isinstance(classes, dict)
    return int(classes[delivery]["pending"])


def status_when(rig: Rig, predicate: Callable[[dict[str, object]], bool], *,
                timeout: float, what: str) -> dict[str, object]:
    """Poll `status --json` (a real subprocess each time) until `predicate` holds."""
    def check() -> dict[str, object] | None:
        report = rig.status()
        return report if predicate(report) else None
    found: dict[str, object] | None = wait_for(check, timeout=timeout, interval=0.2, what=what)
    assert found is not None
    return found


_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", re.M)


def tracebacks(log: str, *, debug: bool) -> list[str]:
    """Log records holding a traceback: those logged at DEBUG, or those above it.

    A third-party library may log a traceback at DEBUG (the rig runs the
    gateway with --log-level DEBUG); an operator at the default INFO never
    sees it. Anything above DEBUG, or text outside any record, counts.
    """
    starts = list(_RECORD.finditer(log))
    found = []
    head = log[:starts[0].start()] if starts else log
    if not debug and "Traceback" in head:
        found.append(head)
    for i, match in enumerate(starts):
        record = log[match.start():starts[i + 1].start() if i + 1 < len(starts) else len(log)]
        if "Traceback" in record and (match.group(1) == "DEBUG") == debug:
            found.append(record)
    return found


def seqs_and_values(rig: Rig, stream: str) -> list[tuple[str, int, int]]:
    """(epoch, seq, line number) of every row of a stream in `readings`, in seq order."""
    rows = rig.consumer_query(
        "SELECT epoch, seq, value FROM readings WHERE stream = ? ORDER BY epoch, seq", (stream,))
    return [(str(e), int(str(s)), int(str(v))) for e, s, v in rows]


def test_no_broker_at_start_keeps_reading_and_drains_when_it_appears(
        rig_factory: type[Rig]) -> None:
    rig = rig_factory()
    # The consumer's persistent session must exist before anything is published
    # (README: "start the consumer once"); the broker saves it when it stops.
    rig.start_consumer()
    rig.broker.stop()
    assert not port_open(rig.broker.port), "nothing may listen on the broker's port"

    rig.start_gateway()  # waits for "device=dev up": it reads with no broker at all
    rig.send(20)
    rig.wait_stored()
    first = rig.status()
    assert first["running"] is True, first
    assert backlog(first, "at-least-once") == 20, first["backlog"]
    assert backlog(first, "exactly-once") == 20, first["backlog"]

    rig.send(20)
    rig.wait_stored()
    # The at-most-once count comes from the running process's snapshot
    # (refreshed every few seconds): poll until it shows all 40 held in memory.
    second = status_when(rig, lambda s: backlog(s, "at-most-once") == 40, timeout=15,
                         what="status to show 40 at-most-once readings held in memory")
    assert second["running"] is True, second
    assert backlog(second, "at-least-once") == 40, second["backlog"]  # grew from 20
    assert backlog(second, "exactly-once") == 40, second["backlog"]
    runtime = second["runtime"]
    assert isinstance(runtime, dict) and runtime["broker_connected"] is False, runtime

    # Reconnect attempts back off from 0.5 s: by 4 s unreachable there were at
    # least 4 failed attempts. The summary says how long it has been.
    rig.gateway.wait_log(r"broker unreachable for ([4-9]|\d\d+)s", timeout=15)
    log = rig.gateway.log_path.read_text(errors="replace")
    port = str(rig.broker.port)
    complaints = [line for line in log.splitlines()
                  if port in line and re.search(r"\b(WARNING|ERROR)\b", line)]
    print(f"\nbroker-unreachable lines in {log.count(chr(10))} log lines: {complaints}")
    assert len(complaints) == 1, complaints
    assert "cannot reach" in complaints[0] and "apt-get install mosquitto" in complaints[0]
    assert rig.gateway.proc is not None and rig.gateway.proc.poll() is None

    rig.gateway.wait_log(r"gateway gw-test starting: .*broker .*; readings go to gw/gw-test/#",
                         timeout=5)
    # The reconnect delay is capped at 5 s (jittered): after an outage of several
    # seconds the gateway finds the broker within about that, not 30 s later.
    back = time.monotonic()
    rig.restart_broker()  # same port, the consumer's session restored from persistence
    rig.gateway.wait_log(r"connected to broker", timeout=40)
    reconnected = time.monotonic() - back
    print(f"\nbroker back -> gateway connected in {reconnected:.1f}s")
    assert reconnected < 9.0, reconnected
    rig.gateway.wait_log(r"backlog of \d+ readings sent in \d+\.\ds", timeout=40)
    rig.wait_delivered(timeout=40)
    status_when(rig, lambda s: backlog(s, "at-least-once") == backlog(s, "exactly-once") == 0,
                timeout=15, what="status backlog drained to 0")
    # After both ends are back, more readings: any at-most-once loss of the
    # outage now shows up as a consumer gap.
    rig.consumer.wait_log(r"connected to broker", count=2, timeout=40)
    rig.send(10)
    rig.wait_delivered(timeout=20)
    wait_for(lambda: 50 in rig.values("amo"), timeout=10, what="last at-most-once reading")
    table = rig.report("no broker at start, then broker started")
    assert_durable_exact(table)
    amo = table["amo"]
    assert amo.duplicates_in_readings == 0, amo.line()
    # At-most-once readings lost before the consumer's first contact with the stream are
    # not gaps (it cannot tell them from history it never subscribed to); every one after is.
    [(first,)] = rig.consumer_query("SELECT min(first_seq) FROM stream_counters "
                                    "WHERE stream = 'amo'")
    assert isinstance(first, int)
    lost_before_first = sum(1 for n in range(1, first) if n not in set(rig.values("amo")))
    assert amo.lost - lost_before_first <= amo.gateway_drops + amo.consumer_gaps, amo.line()
    assert "Traceback" not in rig.gateway.log_text()


def test_sigterm_exits_0_and_restart_continues_the_epoch(rig_factory: type[Rig]) -> None:
    rig = rig_factory()
    rig.start_consumer()
    rig.start_gateway()
    rig.send(150, per_second=1000)
    rig.wait_stored()  # everything read and stored; acks may still be in flight

    started = time.monotonic()
    assert rig.gateway.terminate(timeout=15) == 0
    stop_seconds = time.monotonic() - started
    print(f"\ngateway stopped {stop_seconds:.2f}s after SIGTERM")
    assert stop_seconds < 7.0  # DRAIN_TIMEOUT 5 s plus start-up of the shutdown
    assert "Traceback" not in rig.gateway.log_text()

    stopped = rig.status()
    assert stopped["running"] is False and stopped["last_stop_clean"] is True, stopped
    text = rig.cli("status", "--config", str(rig.gateway.config))
    assert text.returncode == 0 and "last stop was clean" in text.stdout, text.stdout
    epoch = stopped["epoch"]
    last_seqs = {s["stream"]: s["last_seq"] for s in stopped["streams"]}  # type: ignore[attr-defined]
    assert last_seqs["alo"] == 150 and last_seqs["eo"] == 150, last_seqs

    rig.start_gateway()
    rig.gateway.wait_log(r"continued after a clean stop")
    assert rig.status()["epoch"] == epoch
    rig.send(100)
    rig.wait_delivered()
    wait_for(lambda: 250 in rig.values("amo"), timeout=10, what="last at-most-once reading")
    table = rig.report("SIGTERM and restart")
    assert_durable_exact(table)

    epochs = rig.consumer_query("SELECT DISTINCT epoch FROM readings")
    assert epochs == [(epoch,)], epochs
    for stream in DURABLE:
        rows = seqs_and_values(rig, stream)
        # one epoch, seqs 1..250 contiguous, each seq carrying the line it was read from
        assert [(s, v) for _, s, v in rows] == [(n, n) for n in range(1, 251)], stream
    # at-most-once seqs continue too: a reused seq would be dropped as a duplicate
    amo = seqs_and_values(rig, "amo")
    assert all(s == v for _, s, v in amo), "at-most-once seq reused after the restart"
    assert table["amo"].consumer_dropped_duplicates == 0, table["amo"].line()
    shutdown_drops = rig.store_query(
        "SELECT coalesce(sum(count), 0) FROM drops WHERE stream = 'amo'")[0][0]
    assert table["amo"].lost == shutdown_drops, table["amo"].line()

    assert rig.gateway.terminate(timeout=15) == 0
    assert rig.consumer.terminate(timeout=15) == 0
    assert "Traceback" not in rig.consumer.log_text()
    assert "Traceback" not in rig.gateway.log_text()


GARBAGE: dict[str, bytes] = {
    "invalid_utf8": b'{"n": "\xff\xfe"}\n',
    "bad_json": b"temp twenty-one degrees\n",
    "not_an_object": b"[1, 2, 3]\n",
    "line_too_long": b'{"n": 1, "pad": "' + b"x" * 5000 + b'"}\n',  # > max_line_bytes 4096
    "missing_field": b'{"m": 7}\n',
    "bad_value": b'{"n": "\\ud800"}\n',  # a lone surrogate: no UTF-8 payload can carry it
}


def test_garbage_on_the_serial_line_is_counted_and_skipped(rig_factory: type[Rig]) -> None:
    rig = rig_factory()
    rig.start_consumer()
    rig.start_gateway()
    rounds = 6
    for _ in range(rounds):
        for raw in GARBAGE.values():
            rig.send(2, per_second=1000)
            rig.device.write_raw(raw)
    rig.send(10)
    good = len(rig.sent)
    rig.wait_delivered()
    wait_for(lambda: len(rig.values("amo")) >= good, timeout=10, what="at-most-once readings")

    # missing_field and bad_value are counted per stream the line fails to feed
    # (3 streams on `n`)
    expected = {reason: rounds for reason in GARBAGE}
    expected["missing_field"] = expected["bad_value"] = rounds * len(STREAMS)
    status = status_when(rig, lambda s: s["drops"] == expected, timeout=10,
                         what=f"status drops == {expected}")
    table = rig.report(f"garbage: {rounds} of each of {sorted(GARBAGE)} between {good} good lines")
    print(f"  drops in status: {status['drops']}")
    assert_durable_exact(table)
    assert table["amo"].lost == 0 and table["amo"].duplicates_in_readings == 0
    assert status["running"] is True
    assert rig.gateway.proc is not None and rig.gateway.proc.poll() is None
    log = rig.gateway.log_text()
    assert "Traceback" not in log
    for reason in GARBAGE:  # one clear line per reason, the rest counted
        assert len(re.findall(rf"dropped input: {reason}\b", log)) == 1, reason
    # The summary names them as rejected input, apart from lost readings (none here).
    total = sum(expected.values())
    rig.gateway.wait_log(rf"rejected input {total} \(.*\), dropped readings 0[;,]", timeout=10)
    text = rig.cli("status", "--config", str(rig.gateway.config)).stdout
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(expected.items()))
    assert f"\nrejected input: {rejected}\ndropped readings: none\n" in text, text


def test_unplug_and_replug_the_serial_port(rig_factory: type[Rig]) -> None:
    rig = rig_factory()
    rig.start_consumer()
    rig.start_gateway()
    rig.send(100)
    rig.wait_stored()
    rig.unplug_device()
    rig.gateway.wait_log(r"device=dev down")
    # The fault lasts 1.5 s (its duration, not a wait for a condition): the
    # gateway retries the missing port several times (reopen_max 0.5 s).
    time.sleep(1.5)
    assert rig.gateway.proc is not None and rig.gateway.proc.poll() is None
    rig.device.replug()
    rig.gateway.wait_log(r"device=dev up", count=2, timeout=15)
    rig.send(100)
    rig.wait_delivered()
    wait_for(lambda: 200 in rig.values("amo"), timeout=10, what="last at-most-once reading")
    table = rig.report("serial port unplugged and replugged")
    assert_durable_exact(table)
    log = rig.gateway.log_path.read_text(errors="replace")
    states = Counter(re.findall(r"device=dev (up|down)", log))
    print(f"  device state lines: {dict(states)}")
    assert states == {"up": 2, "down": 1}, states
    assert table["amo"].duplicates_in_readings == 0
    debug_only = tracebacks(log, debug=True)
    print(f"  tracebacks logged at DEBUG (by libraries): {len(debug_only)}")
    assert tracebacks(log, debug=False) == []


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_check_accepts_each_shipped_config(path: Path, tmp_path: Path) -> None:
    done = run_cli("check", "--config", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout and "Traceback" not in done.stderr


def test_run_with_a_bad_config_exits_1_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"""version: 1
gateway:
  id: bad-gw
  state_dir: {tmp_path / 'state'}
devics: []
devices:
  - id: dev
    driver: serial
    port: /dev/ttyUSB0
    streams:
      - name: t
        field: t
        delivery: exactly_once
""")
    done = run_cli("run", "--config", str(bad), cwd=tmp_path)
    print(done.stderr)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert re.search(rf"{re.escape(str(bad))}:5: devics: .*did you mean 'devices'", done.stderr)
    assert re.search(rf"{re.escape(str(bad))}:13: devices\[0\]\.streams\[0\]\.delivery: "
                     r"expected one of .*found 'exactly_once'", done.stderr)
    assert "2 problems found" in done.stderr
    assert not (tmp_path / "state" / "outbox.sqlite").exists(), "no store for a bad config"

    # and `check` says the same with exit 1
    checked = run_cli("check", "--config", str(bad), cwd=tmp_path)
    assert checked.returncode == 1 and "2 problems found" in checked.stderr
    assert "Traceback" not in checked.stderr

