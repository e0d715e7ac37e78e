"""The consumer against hostile and broken input, end to end.

Every part is real: mosquitto on a free loopback port (with an ACL file where
the test needs one), the consumer as a process (`python -m gateway consume`),
its database a SQLite file or a schema of its own on the PostgreSQL server,
and a paho publisher in the test playing the gateways and the attacker.
Proofs are counts: readings published, stored, refused (by reason), copies held.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.core.envelope import Envelope, encode
from tests.support.broker import Mosquitto
from tests.support.ports import free_port
from tests.support.postgres import own_schema
from tests.support.procs import Service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

EPOCH = "20261204T020000Z-0a1b2c3d"
T0 = 1_796_000_000.0


def settle(condition: Any, timeout: float, what: str) -> bool:
    """`wait_for` that returns False at its deadline, so that the figures are printed first."""
    try:
        wait_for(condition, timeout=timeout, what=what)
    except AssertionError as exc:
        print(f"\n  {exc}")
        return False
    return True


def reading(gateway: str, seq: int, *, device: str = "climate", stream: str = "temperature",
            value: Any = 21.5, confirm: bool = False) -> bytes:
    ts = T0 + seq % 100_000
    return encode(Envelope(gateway, EPOCH, device, stream, seq, ts, value, "°C", confirm))


class Publisher:
    """A paho client in the test: publishes at QoS 1 and waits for each PUBACK."""

    def __init__(self, port: int, client_id: str, listen: str | None = None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if listen is not None:
            done = self.client.subscribe(listen, qos=1)
            assert done[0] == mqtt.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=60)
        assert info.is_published(), topic

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ConsumerUnderTest:
    """A broker and a consumer process writing to `database`."""

    def __init__(self, workdir: Path, database: str, *, broker_extra: str = "",
                 extra: str = "") -> None:
        self.workdir = workdir
        self.database = database
        self.broker = Mosquitto(workdir / "broker", extra=broker_extra)
        self.broker.start()
        config = workdir / "consumer.yaml"
        config.write_text(f"""version: 1
broker:
  url: mqtt://127.0.0.1:{self.broker.port}
  client_id: consumer-1
  subscribe: gw/#
  keepalive: 5s
database: '{database}'
commit_interval: 50ms
summary_interval: 1s
{extra}""")
        self.service = Service("consume", config, workdir, "consumer")

    def start(self) -> None:
        self.service.start()
        self.service.wait_log(r"subscribed to")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.database.startswith("postgresql://"):
            with psycopg.connect(self.database, autocommit=True) as conn:
                cursor = conn.execute(sql)
                return cursor.fetchall() if cursor.description is not None else []
        if not Path(self.database).exists():
            return []
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as conn:
            return conn.execute(sql).fetchall()

    def count(self, where: str = "TRUE") -> int:
        return int(self.query(f"SELECT count(*) FROM readings WHERE {where}")[0][0])

    def rejects(self) -> dict[str, int]:
        return {str(r): int(c) for r, c in self.query("SELECT reason, count FROM consumer_rejects")}

    def vm(self, key: str) -> int:
        """A figure of /proc/PID/status of the consumer, in kB (VmRSS, VmHWM)."""
        assert self.service.proc is not None
        status = Path(f"/proc/{self.service.proc.pid}/status").read_text()
        found = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
        assert found is not None, status
        return int(found.group(1))

    def close(self) -> None:
        self.service.ensure_stopped()
        self.broker.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A schema of its own on the PostgreSQL server, dropped afterwards."""
    with own_schema() as url:
        yield url


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[ConsumerUnderTest]]:
    rigs: list[ConsumerUnderTest] = []
    yield rigs
    for rig in rigs:
        rig.close()


def consumer(made: list[ConsumerUnderTest], tmp_path: Path, database: str | None = None,
             **kwargs: str) -> ConsumerUnderTest:
    rig = ConsumerUnderTest(tmp_path, database or str(tmp_path / "consumer.sqlite"), **kwargs)
    made.append(rig)
    rig.start()
    return rig


# -- 1. a poison message on PostgreSQL ----------------------------------------------
def test_poison_messages_on_postgresql_do_not_stop_the_consumer(
        tmp_path: Path, pg_url: str, made: list[ConsumerUnderTest]) -> None:
    """One message whose device is 8,000 characters (over PostgreSQL's btree row limit),
    and one the database itself refuses (a constraint), before 20 good readings of the same
    gateway and 50 of another: the 70 are stored, the two are kept in rejected_payloads,
    and the consumer goes on after a restart (the broker does not redeliver them)."""
    rig = consumer(made, tmp_path, pg_url)
    rig.query("ALTER TABLE readings ADD CONSTRAINT refuse CHECK (device <> 'refused-dev')")
    pub = Publisher(rig.broker.port, "gw-a")
    try:
        pub.publish("gw/gw-a/climate/temperature",
                    reading("gw-a", 1, device=secrets.token_urlsafe(6000)[:8000]))
        pub.publish("gw/gw-a/refused-dev/temperature", reading("gw-a", 1, device="refused-dev"))
        for seq in range(1, 21):
            pub.publish("gw/gw-a/climate/temperature", reading("gw-a", seq))
        for seq in range(1, 51):
            pub.publish("gw/gw-b/climate/temperature", reading("gw-b", seq))
        settled = settle(lambda: rig.count() == 70, 20, "the 70 good readings stored")
        stored = (rig.count("gateway = 'gw-a'"), rig.count("gateway = 'gw-b'"))
        failed = rig.service.log_text().count("commit failed")
        print(f"\n  published 72, stored gw-a {stored[0]} gw-b {stored[1]}, commits failed "
              f"{failed}")
        rejected = sorted((str(reason), len(str(payload))) for reason, payload in rig.query(
            "SELECT reason, payload FROM rejected_payloads"))
        print(f"  rejected_payloads {rejected}, consumer_rejects {rig.rejects()}")
        assert settled and stored == (20, 50)
        assert [reason for reason, _ in rejected] == ["bad_name", "database_refused"]
        assert all(size <= 512 for _, size in rejected), "excerpts are bounded"
        assert rig.rejects() == {"bad_name": 1, "database_refused": 1}
        assert "commit failed" not in rig.service.log_text()

        assert rig.service.terminate() == 0
        rig.start()
        for seq in range(21, 26):
            pub.publish("gw/gw-a/climate/temperature", reading("gw-a", seq))
        wait_for(lambda: rig.count() == 75, timeout=20, what="consuming after the restart")
    finally:
        pub.close()
    assert rig.rejects() == {"bad_name": 1, "database_refused": 1}, "nothing redelivered"
    assert len(rig.query("SELECT * FROM rejected_payloads")) == 2
    assert "Traceback" not in rig.service.log_text()


# -- 2. a payload not tied to its topic ---------------------------------------------
def test_a_forged_identity_is_refused_and_the_victims_readings_are_stored(
        tmp_path: Path, made: list[ConsumerUnderTest]) -> None:
    """Each client may write only its own topics (`pattern write gw/%c/+/+`); the attacker
    publishes on its topics readings that claim to be the victim's, with the victim's epoch
    and seqs ahead of it. They are refused (topic_mismatch), nothing is confirmed to anyone
    for them, and the victim's real readings are stored and confirmed to the victim."""
    acl = tmp_path / "broker.acl"
    acl.write_text("topic read gw/#\ntopic write gw/+/_confirm\npattern write gw/%c/+/+\n")
    rig = consumer(made, tmp_path, broker_extra=f"acl_file {acl}\n")
    attacker = Publisher(rig.broker.port, "attacker-gw", listen="gw/attacker-gw/_confirm")
    victim = Publisher(rig.broker.port, "victim-gw", listen="gw/victim-gw/_confirm")
    forged_topic = "gw/attacker-gw/climate/temperature"
    try:
        def handled() -> int:  # stored, dropped as duplicates or refused
            counted = rig.query("SELECT coalesce(sum(received + duplicates), 0) "
                                "FROM stream_counters")[0][0]
            return int(counted) + rig.rejects().get("topic_mismatch", 0)

        for seq in range(1, 11):
            attacker.publish(forged_topic, reading("victim-gw", seq, value=666, confirm=True))
        wait_for(lambda: handled() == 10, timeout=15, what="the 10 forged readings handled")
        for seq in range(1, 11):
            victim.publish("gw/victim-gw/climate/temperature",
                           reading("victim-gw", seq, value=seq, confirm=True))
        wait_for(lambda: handled() == 20, timeout=15, what="the victim's 10 readings handled")

        def confirmed() -> set[int]:
            seqs: set[int] = set()
            for _, payload in victim.received:
                for _epoch, _device, _stream, first, last in json.loads(payload)["marks"]:
                    seqs.update(range(first, last + 1))
            return seqs

        settle(lambda: confirmed() == set(range(1, 11)), 15,
               "the victim's seqs 1-10 confirmed to the victim")
    finally:
        attacker.close()
        victim.close()
    values = [json.loads(str(v)) for (v,) in rig.query(
        "SELECT value FROM readings WHERE gateway = 'victim-gw' ORDER BY seq")]
    duplicates = rig.query("SELECT sum(duplicates) FROM stream_counters")[0][0]
    print(f"\n  forged 10, real 10: stored values {values}, duplicates {duplicates}, "
          f"rejects {rig.rejects()}, confirmations to the attacker {len(attacker.received)}")
    assert values == list(range(1, 11))
    assert duplicates == 0
    assert attacker.received == []
    assert confirmed() == set(range(1, 11))
    log = rig.service.log_text()
    lines = [line for line in log.splitlines() if "topic_mismatch" in line]
    assert len(lines) == 1 and f"topic={forged_topic}" in lines[0], lines


# -- 3. no size limits --------------------------------------------------------------
def test_a_payload_over_max_payload_is_refused_unparsed_and_memory_stays_small(
        tmp_path: Path, made: list[ConsumerUnderTest]) -> None:
    """Three 1 MB readings (refused: too_large, counted) and one of 64 MB (over the Maximum
    Packet Size the consumer asks of the broker: never sent to it); the consumer's peak RSS
    grows by a few MB, and the readings after them are stored."""
    rig = consumer(made, tmp_path)
    pub = Publisher(rig.broker.port, "gw-a")
    topic = "gw/gw-a/climate/temperature"
    try:
        pub.publish(topic, reading("gw-a", 1))
        wait_for(lambda: rig.count() == 1, timeout=15, what="the first reading")
        before = rig.vm("VmHWM")
        for seq in (2, 3, 4):
            pub.publish(topic, reading("gw-a", seq, value="x" * 1024 * 1024))
        pub.publish(topic, reading("gw-a", 5, value="y" * 64 * 1024 * 1024))
        for seq in range(6, 11):
            pub.publish(topic, reading("gw-a", seq))
        wait_for(lambda: rig.count("seq = 10") == 1, timeout=60, what="the last reading")
        settle(lambda: rig.rejects().get("too_large") == 3, 15, "three too_large")
        peak, now = rig.vm("VmHWM"), rig.vm("VmRSS")
    finally:
        pub.close()
    seqs = [int(s) for (s,) in rig.query("SELECT seq FROM readings ORDER BY seq")]
    print(f"\n  consumer peak RSS {before} kB before, {peak} kB after (RSS now {now} kB); "
          f"stored seqs {seqs}, rejects {rig.rejects()}")
    assert seqs == [1, 6, 7, 8, 9, 10]
    assert peak - before < 16 * 1024, "a refused payload is never parsed or copied"
    assert rig.rejects() == {"too_large": 3}
    [(reason, excerpt)] = rig.query("SELECT reason, payload FROM rejected_payloads LIMIT 1")
    assert reason == "too_large" and len(str(excerpt)) <= 512


# -- 4. a seq far ahead ---------------------------------------------------------------
def test_a_seq_jump_is_refused_and_the_gap_metric_stays(
        tmp_path: Path, made: list[ConsumerUnderTest]) -> None:
    port = free_port()
    rig = consumer(made, tmp_path, extra=f"metrics:\n  listen: 127.0.0.1:{port}\n")
    pub = Publisher(rig.broker.port, "gw-a")
    try:
        for index, stream in enumerate(("temperature", "humidity")):
            topic = f"gw/gw-a/climate/{stream}"
            for seq in range(1, 6):
                pub.publish(topic, reading("gw-a", seq, stream=stream))
            wait_for(lambda i=index: rig.count("seq <= 10") == 5 + 10 * i,  # type: ignore[misc]
                     timeout=15, what="first contact committed")
            pub.publish(topic, reading("gw-a", 2**63 - 1, stream=stream))
            for seq in range(6, 11):
                pub.publish(topic, reading("gw-a", seq, stream=stream))
        wait_for(lambda: rig.count("seq <= 10") == 20, timeout=15, what="20 readings")
        settle(lambda: rig.rejects().get("seq_jump") == 2, 15, "2 seq jumps")
    finally:
        pub.close()

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    def with_gaps() -> str:
        text = scrape()
        return text if "mqtt_consumer_gaps" in text else ""

    settle(with_gaps, 10, "mqtt_consumer_gaps in the metrics")
    text = scrape()
    gaps = re.search(r"^mqtt_consumer_gaps(?:_total)? (\S+)$", text, re.MULTILINE)
    counters = rig.query("SELECT stream, max_seq, gaps FROM stream_counters ORDER BY stream")
    print(f"\n  stream_counters {counters}, metric gaps {gaps and gaps.group(1)}, "
          f"rejects {rig.rejects()}")
    assert counters == [("humidity", 10, 0), ("temperature", 10, 0)]
    assert gaps is not None and float(gaps.group(1)) == 0
    assert re.search(r'^mqtt_consumer_rejects_total\{reason="seq_jump"\} 2\.0$', text,
                     re.MULTILINE), text


# -- 5. copies held while the database is down ----------------------------------------
def test_copies_redelivered_while_the_database_is_down_are_held_once(
        tmp_path: Path, made: list[ConsumerUnderTest]) -> None:
    """Another writer holds the SQLite file's lock (commits fail: database is locked) while
    the broker restarts twice, each time redelivering every unacknowledged message: the
    consumer holds each reading once, and stores each once when the lock is released."""
    rig = consumer(made, tmp_path)
    pub = Publisher(rig.broker.port, "gw-a")
    topic = "gw/gw-a/climate/temperature"
    pub.publish(topic, reading("gw-a", 1))
    wait_for(lambda: rig.count() == 1, timeout=15, what="the first reading")
    pub.close()
    held = re.compile(r"(\d+) messages(?: \((\d+) distinct\))? kept unacknowledged")
    with closing(sqlite3.connect(rig.database, isolation_level=None)) as locker:
        locker.execute("BEGIN IMMEDIATE")
        pub = Publisher(rig.broker.port, "gw-a")
        for seq in range(2, 32):
            pub.publish(topic, reading("gw-a", seq))
        pub.close()
        for restart in (1, 2):
            rig.service.wait_log(r"kept unacknowledged", timeout=30, count=restart)
            rig.broker.stop()
            rig.broker.start()
            rig.service.wait_log(r"session resumed", timeout=60, count=restart)

        def copies_seen() -> tuple[int, int] | None:
            found = held.findall(rig.service.log_text())
            last = found[-1] if found else None
            return (int(last[0]), int(last[1] or last[0])) if last and int(last[0]) > 30 else None

        copies, distinct = wait_for(copies_seen, timeout=60, what="redelivered copies held")
        locker.execute("ROLLBACK")
    wait_for(lambda: rig.count() == 31, timeout=30, what="31 readings stored")
    duplicates = rig.query("SELECT sum(duplicates) FROM stream_counters")[0][0]
    print(f"\n  published 31, held {copies} copies as {distinct} readings, stored {rig.count()}, "
          f"duplicates {duplicates}")
    assert distinct == 30, "one per identity"
    assert duplicates == 0
    # Every copy was acknowledged: a restarted consumer gets nothing again.
    assert rig.service.terminate() == 0
    rig.start()
    pub = Publisher(rig.broker.port, "gw-a")
    pub.publish(topic, reading("gw-a", 32))
    pub.close()
    wait_for(lambda: rig.count() == 32, timeout=15, what="seq 32 after the restart")
    assert rig.query("SELECT sum(duplicates) FROM stream_counters")[0][0] == 0
