"""Three consumers in one MQTT 5 shared subscription, on one PostgreSQL schema.

`subscribe: $share/ingest/gw/#` splits the messages among three real
`python -m gateway consume` processes with distinct client ids; two real
gateways read pty sensors (streams `alo` at-least-once and `eo`
exactly-once) and hold every durable row until a consumer confirms it
(end-to-end, the default). While the sensors write at a steady rate the test
SIGKILLs consumer members and restarts them, and SIGKILLs one gateway once.

The counts, per gateway and stream: produced (the seqs the gateway handed
out, over all its epochs), stored (rows in `readings`), lost (produced
identities not stored), duplicated (a sensor line stored twice, under any
identity), and the consumers' `stream_counters` (received equal to the rows,
no gaps: nothing was dropped). Every gateway's outbox drains: each reading
was confirmed by whichever member committed it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.broker import Mosquitto
from tests.support.postgres import own_schema
from tests.support.procs import Service
from tests.support.pty_device import PtyDevice
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

GROUP = "ingest"
MEMBERS = 3
STREAMS = {"alo": "at-least-once", "eo": "exactly-once"}
LINES_PER_SECOND = 300.0


class Edge:
    """One gateway process with its own pty sensor, store and config."""

    def __init__(self, workdir: Path, gateway_id: str, broker_port: int) -> None:
        self.gateway_id = gateway_id
        self.dir = workdir / gateway_id
        self.dir.mkdir()
        self.device = PtyDevice(self.dir / "ttyTEST")
        self.sent: list[int] = []
        self.paused = False
        self.lock = threading.Lock()  # held by the feeder while it writes one line
        streams = "\n".join(f"      - {{name: {name}, field: n, delivery: {delivery}}}"
                            for name, delivery in STREAMS.items())
        config = self.dir / "gateway.yaml"
        config.write_text(f"""version: 1
gateway:
  id: {gateway_id}
  state_dir: {self.dir / 'state'}
  summary_interval: 1s
broker:
  url: mqtt://127.0.0.1:{broker_port}
  keepalive: 5s
store:
  commit_interval: 50ms
confirmation_timeout: 2s
devices:
  - id: dev
    driver: serial
    port: {self.device.link}
    reopen_max: 0.5s
    streams:
{streams}
""")
        self.service = Service("run", config, self.dir, "gateway", log_level="INFO")

    def start(self) -> None:
        """Start the gateway and wait until it reads the sensor."""
        self.service.start()
        self.service.wait_log(r"device=dev up")

    def send_one(self) -> None:
        """One sensor line, unless paused (the feeder thread calls this)."""
        with self.lock:
            if not self.paused:
                n = len(self.sent) + 1
                self.device.send({"n": n})
                self.sent.append(n)

    def pause(self) -> None:
        """Stop the sensor; when this returns no line is being written."""
        with self.lock:
            self.paused = True

    def resume(self) -> None:
        """Let the sensor write again."""
        with self.lock:
            self.paused = False

    def store(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the gateway's store (read-only; [] before it exists)."""
        path = self.dir / "state" / "outbox.sqlite"
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def produced(self) -> dict[tuple[str, str, str], int]:
        """The last seq handed out per (epoch, device, stream): what the gateway stored."""
        return {(str(e), str(d), str(s)): int(n) for e, d, s, n in
                self.store("SELECT epoch, device, stream, last_seq FROM sequences")}

    def stored_lines(self) -> int:
        """Sensor lines committed to the store (the fewer of the two streams)."""
        per_stream = {s: 0 for s in STREAMS}
        for (_, _, stream), last in self.produced().items():
            per_stream[stream] = per_stream.get(stream, 0) + last
        return min(per_stream.values())

    def held(self) -> int:
        """Rows still in the outbox (unacknowledged or unconfirmed)."""
        rows = self.store("SELECT count(*) FROM outbox")
        return int(rows[0][0]) if rows else -1

    def close(self) -> None:
        """Stop the gateway and release the pty."""
        self.service.ensure_stopped()
        self.device.close()


class Feeder(threading.Thread):
    """Writes one line to every unpaused sensor at a steady rate, until stopped."""

    def __init__(self, edges: list[Edge], per_second: float) -> None:
        super().__init__(daemon=True)
        self.edges = edges
        self.gap = 1.0 / per_second
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.gap):
            for edge in self.edges:
                edge.send_one()


@dataclass
class StreamCounts:
    """The proof for one gateway's stream."""

    gateway: str
    stream: str
    sent: int
    produced: int
    stored: int
    lost: int
    unknown: int  # rows of identities the gateway never handed out
    duplicated: int  # sensor lines stored more than once (under any identity)
    counters_received: int
    counters_gaps: int
    counters_duplicates: int
    missing_lines: list[int] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.gateway:<5} {STREAMS[self.stream]:<14} sent {self.sent:>5}  produced "
                f"{self.produced:>5}  stored {self.stored:>5}  lost {self.lost:>3}  duplicated "
                f"{self.duplicated:>3}  unknown {self.unknown:>3}  counters: received "
                f"{self.counters_received:>5} gaps {self.counters_gaps:>3} dup-dropped "
                f"{self.counters_duplicates:>4}")


def consumer_config(workdir: Path, member: int, port: int, database: str) -> Path:
    path = workdir / f"consumer-{member}.yaml"
    path.write_text(f"""version: 1
broker:
  url: mqtt://127.0.0.1:{port}
  client_id: ingest-{member}
  subscribe: '$share/{GROUP}/gw/#'
  keepalive: 5s
database: '{database}'
commit_interval: 50ms
summary_interval: 1s
""")
    return path


def stored_by(member: Service) -> int:
    """Readings a member stored, over all its runs (the last summary of each run)."""
    total = 0
    for log in member.logs:
        figures = re.findall(r"summary: stored (\d+)|consumer stopped: stored (\d+)",
                             log.read_text(errors="replace"))
        if figures:
            total += int(next(f for f in figures[-1] if f))
    return total


@pytest.fixture
def pg_url() -> Iterator[str]:
    with own_schema("shared") as url:
        yield url


def counts(edge: Edge, db: psycopg.Connection[Any]) -> list[StreamCounts]:
    """Produced, stored, lost and duplicated for each stream of one gateway."""
    produced = edge.produced()
    rows = db.execute("SELECT epoch, device, stream, seq, value FROM readings WHERE gateway = %s",
                      (edge.gateway_id,)).fetchall()
    counters = db.execute("SELECT epoch, device, stream, received, gaps, duplicates "
                          "FROM stream_counters WHERE gateway = %s", (edge.gateway_id,)).fetchall()
    table = []
    for stream in STREAMS:
        expected = {(e, d, seq) for (e, d, s), last in produced.items() if s == stream
                    for seq in range(1, last + 1)}
        got = [(str(e), str(d), int(seq)) for e, d, s, seq, _ in rows if s == stream]
        values = [int(json.loads(str(v))) for _, _, s, _, v in rows if s == stream]
        table.append(StreamCounts(
            gateway=edge.gateway_id, stream=stream, sent=len(edge.sent), produced=len(expected),
            stored=len(got), lost=len(expected - set(got)), unknown=len(set(got) - expected),
            duplicated=len(values) - len(set(values)),
            counters_received=sum(int(c[3]) for c in counters if c[2] == stream),
            counters_gaps=sum(int(c[4]) for c in counters if c[2] == stream),
            counters_duplicates=sum(int(c[5]) for c in counters if c[2] == stream),
            missing_lines=sorted(set(edge.sent) - set(values))[:10]))
    return table


def test_three_members_of_a_shared_group_store_each_reading_once(
        tmp_path: Path, pg_url: str) -> None:
    broker = Mosquitto(tmp_path / "broker", persistent=False)
    broker.start()
    members = [Service("consume", consumer_config(tmp_path, i, broker.port, pg_url), tmp_path,
                       f"consumer-{i}", log_level="INFO") for i in range(1, MEMBERS + 1)]
    edges = [Edge(tmp_path, gateway_id, broker.port) for gateway_id in ("gw-a", "gw-b")]
    feeder = Feeder(edges, LINES_PER_SECOND)
    try:
        for member in members:
            member.start()
            member.wait_log(r"subscribed to \$share/")
        for edge in edges:
            edge.start()
        feeder.start()
        steady = edges[1]  # never paused: the clock of the schedule

        def at(lines: int) -> None:
            wait_for(lambda: len(steady.sent) >= lines, timeout=20, what=f"{lines} lines sent")

        at(300)
        members[0].kill()
        at(600)
        members[0].start()
        members[1].kill()
        at(900)
        # The sensor pauses for the gateway's kill: what it writes while no gateway reads
        # the pty is flushed when the port opens, and that is not a loss of the path.
        killed = edges[0]
        killed.pause()
        wait_for(lambda: killed.stored_lines() >= len(killed.sent), timeout=15,
                 what="gw-a to store what its sensor wrote")
        killed.service.kill()
        killed.start()
        killed.resume()
        at(1200)
        members[2].kill()
        members[1].start()
        at(1500)
        members[2].start()
        members[0].kill()
        at(1800)
        members[0].start()
        feeder.stopped.set()
        feeder.join(5)

        with psycopg.connect(pg_url, autocommit=True) as db:
            def settled() -> bool:
                table = [c for edge in edges for c in counts(edge, db)]
                return (all(edge.held() == 0 for edge in edges)
                        and all(c.stored >= c.produced == c.sent for c in table))

            wait_for(settled, timeout=30, interval=0.2,
                     what="every reading stored and every outbox drained")
            table = [c for edge in edges for c in counts(edge, db)]
            epochs = db.execute("SELECT gateway, count(DISTINCT epoch) FROM readings "
                                "GROUP BY gateway ORDER BY gateway").fetchall()

        per_member = [stored_by(m) for m in members]
        print(f"\nshared group of {MEMBERS}: consumer kills {sum(m.kills for m in members)}, "
              f"gateway kills {sum(e.service.kills for e in edges)}, stored per member "
              f"{per_member}, epochs {epochs}")
        for c in table:
            print("  " + c.line())
        for c in table:
            assert c.produced == c.sent, c.line()
            assert (c.lost, c.unknown, c.duplicated) == (0, 0, 0), c.line()
            assert c.stored == c.produced, c.line()
            assert c.missing_lines == [], c.line()
            assert c.counters_received == c.stored, c.line()
            assert c.counters_gaps == 0, c.line()
        assert [edge.held() for edge in edges] == [0, 0], "every reading confirmed"
        assert epochs == [("gw-a", 2), ("gw-b", 1)], "the SIGKILLed gateway has a second epoch"
        assert all(stored > 0 for stored in per_member), f"the group shares the load {per_member}"
        for member in members:
            assert member.terminate() == 0
            assert "Traceback" not in member.log_text()
    finally:
        feeder.stopped.set()
        for member in members:
            member.ensure_stopped()
        for edge in edges:
            edge.close()
        broker.stop()
