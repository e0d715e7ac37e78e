"""Hostile and broken input end to end: forged confirmations, a destroyed store, a YAML
bomb. Every part is real (mosquitto, the gateway process, its SQLite store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.core.confirmation import Mark, encode_marks
from tests.integration.test_delivery import publish_all, status_runtime
from tests.support.procs import REPO
from tests.support.rig import Rig, assert_durable_exact
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _count(rig: Rig, sql: str) -> int:
    rows = rig.store_query(sql)
    return int(str(rows[0][0])) if rows else -1


def test_forged_confirmation_with_no_subscriber_deletes_nothing(rig_factory: type[Rig]) -> None:
    """No subscriber: mosquitto answers QoS 1 with 0x10, so no `alo` row is broker-
    acknowledged, and a confirmation covering every issued seq must leave them all stored.
    The `eo` rows (QoS 2, which mosquitto completes) are acknowledged: the same message
    settles those, and what it settles is counted."""
    rig = rig_factory(tap=False, gateway_extra="confirmation_timeout: 60s\n")
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    rig.send(20)
    rig.wait_stored()
    alo = "SELECT count(*) FROM outbox WHERE stream = 'alo'"
    held = "SELECT count(*) FROM outbox WHERE stream = 'eo' AND acked_at IS NOT NULL"
    wait_for(lambda: _count(rig, held) == 20, timeout=15, what="20 eo rows broker-acknowledged")
    assert _count(rig, alo) == 20
    assert _count(rig, alo + " AND acked_at IS NOT NULL") == 0
    rig.gateway.wait_log(r"stream=alo seq=\d+: broker answered .*0x10")
    epoch = str(rig.store_query("SELECT value FROM meta WHERE key = 'epoch'")[0][0])
    forged = encode_marks(rig.gateway_id, [Mark(epoch, "dev", "alo", 1, 20),
                                           Mark(epoch, "dev", "eo", 1, 20)])
    publish_all(rig.broker.port, f"gw/{rig.gateway_id}/_confirm", [forged])
    runtime = status_runtime(
        rig, lambda r: r["confirmations_ignored"].get("confirm_not_acked", 0) >= 1
        and r["readings_confirmed"] >= 20)
    print(f"forged marks: {runtime['confirmations_ignored']}, confirmed "
          f"{runtime['readings_confirmed']}, alo backlog {_count(rig, alo)}")
    assert runtime["confirmations_ignored"] == {"confirm_not_acked": 1}, runtime
    assert runtime["readings_confirmed"] == 20
    assert _count(rig, alo) == 20
    rig.gateway.wait_log(r"confirm_not_acked: 1 marks covered readings")
    assert "Traceback" not in rig.gateway.log_text()


def test_oversized_confirmations_are_refused_and_counted(rig_factory: type[Rig]) -> None:
    """A 700 kB confirmation and one with 1,001 ranges: refused on their size, counted,
    and the gateway goes on confirming (a genuine mark after them still settles). One of
    16 MB is beyond the Maximum Packet Size the gateway asks for: the broker drops it."""
    rig = rig_factory(gateway_extra="confirmation_timeout: 60s\n")
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    rig.send(5)
    rig.wait_stored()
    held = "SELECT count(*) FROM outbox WHERE stream = 'eo' AND acked_at IS NOT NULL"
    wait_for(lambda: _count(rig, held) == 5, timeout=15, what="5 eo rows broker-acknowledged")
    epoch = str(rig.store_query("SELECT value FROM meta WHERE key = 'epoch'")[0][0])
    huge = b'{"v": 1, "gateway": "gw-test", "marks": [' + b'["e", "d", "s", 1, 1],' * 30_000
    beyond = b'{"v": 1, "gateway": "gw-test", "marks": [' + b'["e", "d", "s", 1, 1],' * 700_000
    many = encode_marks(rig.gateway_id, [Mark(epoch, "dev", "eo", 2 * i + 1, 2 * i + 1)
                                         for i in range(1001)])
    genuine = encode_marks(rig.gateway_id, [Mark(epoch, "dev", "eo", 1, 5)])
    publish_all(rig.broker.port, f"gw/{rig.gateway_id}/_confirm", [beyond, huge, many, genuine])
    wait_for(lambda: _count(rig, "SELECT count(*) FROM outbox WHERE stream = 'eo'") == 0,
             timeout=15, what="the genuine mark settled")
    runtime = status_runtime(rig, lambda r: len(r["confirmations_ignored"]) >= 2)
    assert runtime["confirmations_ignored"] == {"confirm_too_large": 1,
                                                "confirm_too_many_ranges": 1}, runtime
    rig.gateway.wait_log(r"confirm_too_large: topic gw/gw-test/_confirm: \d+ bytes")


def test_a_store_emptied_while_stopped_is_an_error_and_a_counted_loss(
        rig_factory: type[Rig]) -> None:
    """Stop with readings pending, `truncate -s 0` the store, start: not a silent new store."""
    rig = rig_factory(tap=False)  # no subscriber: the readings stay pending
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    rig.send(30)
    rig.wait_stored()
    pending = _count(rig, "SELECT count(*) FROM outbox")
    assert pending == 60
    assert rig.gateway.terminate() == 0
    rig.store_path.write_bytes(b"")  # truncate -s 0
    rig.start_gateway()
    rig.gateway.wait_log(r"ERROR .*store_lost_unknown|ERROR .*an unknown number")
    error = next(line for line in rig.gateway.log_path.read_text().splitlines()
                 if "ERROR" in line and "empty (0 bytes)" in line)
    assert str(rig.store_path) in error and ".corrupt-" in error, error
    report = rig.status()
    print(f"pending before: {pending}; error: {error}; status: store_lost_unknown "
          f"{report['store_lost_unknown']}, {report['store_lost_unknown_last']}")
    assert report["store_lost_unknown"] == 1 and report["store_recovered"] == 1
    assert ".corrupt-" in str(report["store_lost_unknown_last"])
    text = rig.cli("status", "--config", str(rig.gateway.config)).stdout
    assert "STORE LOST 1 time(s)" in text, text
    assert "Traceback" not in rig.gateway.log_text()


def _bomb(levels: int = 9) -> str:
    """A nine-fold alias chain: 22 lines that expand to 9**9 (387 million) values."""
    lines = ["x0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_check_of_an_alias_bomb_exits_1_at_once_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\n" + _bomb())
    measure = ("import resource, subprocess, sys, time; t = time.monotonic(); "
               "p = subprocess.run([sys.executable, '-m', 'gateway', 'check', '--config', "
               f"{str(path)!r}], capture_output=True, text=True); "
               "print(p.returncode, round(time.monotonic() - t, 2), "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); "
               "print(p.stdout + p.stderr)")
    done = subprocess.run([sys.executable, "-c", measure], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          check=False)
    first, _, output = done.stdout.partition("\n")
    code, seconds, rss_mb = first.split()
    print(f"check of an alias bomb: exit {code} in {seconds}s, max RSS {rss_mb} MB: {output}")
    assert code == "1", done.stdout + done.stderr
    assert float(seconds) < 5 and int(rss_mb) < 200
    assert f"{path}:" in output and "aliases expand the document to more than 100000" in output
    assert "Traceback" not in output + done.stderr


def test_sighup_with_an_alias_bomb_is_rejected_and_the_gateway_keeps_delivering(
        rig_factory: type[Rig]) -> None:
    rig = rig_factory()
    rig.start_consumer()
    rig.start_gateway()
    rig.send(50)
    rig.wait_delivered()
    config = rig.gateway.config
    config.write_text(config.read_text() + _bomb())
    assert rig.gateway.proc is not None
    started = time.monotonic()
    os.kill(rig.gateway.proc.pid, signal.SIGHUP)
    rig.gateway.wait_log(r"reload rejected: .*aliases expand the document")
    rig.gateway.wait_log(r"reload rejected: 1 problem in .*still running the previous config")
    rejected_in = time.monotonic() - started
    rig.send(50)
    rig.wait_delivered()
    table = rig.report(f"SIGHUP with an alias bomb (rejected in {rejected_in:.2f}s)")
    assert_durable_exact(table)
    assert rejected_in < 5
    assert "Traceback" not in rig.gateway.log_text()
