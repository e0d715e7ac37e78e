"""A whole delivery path for integration tests, every part real.

pty sensor -> gateway process -> (optional TCP proxy) -> mosquitto -> consumer
process -> SQLite `readings`, plus a wire tap. The sensor sends JSON lines
`{"n": k}`; the device map turns each into one reading per delivery class
(streams `amo`, `alo`, `eo`), so every reading's value says which line it
came from and the counts below can be checked per class.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.support.broker import Mosquitto
from tests.support.procs import REPO, Service
from tests.support.proxy import TcpProxy
from tests.support.pty_device import PtyDevice
from tests.support.waiting import wait_for
from tests.support.wiretap import WireTap


class Broker(Protocol):
    """What the rig needs of a broker: mosquitto (broker.py) or NATS (nats.py)."""

    port: int
    kills: int
    proc: subprocess.Popen[bytes] | None

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...


STREAMS = {"amo": "at-most-once", "alo": "at-least-once", "eo": "exactly-once"}
DURABLE = ("alo", "eo")


@dataclass(frozen=True)
class ClassCounts:
    """The proof of one delivery class after a run."""

    stream: str
    produced: int
    stored_by_gateway: int
    delivered: int
    rows: int
    lost: int
    wire_duplicates: int
    duplicates_in_readings: int
    consumer_dropped_duplicates: int
    gateway_drops: int
    consumer_gaps: int
    delivery: str = ""

    def line(self) -> str:
        """One row of the table printed with each test."""
        label = self.delivery or STREAMS.get(self.stream, self.stream)
        return (f"{label:<14} {self.stream:<6} produced {self.produced:>5}  stored "
                f"{self.stored_by_gateway:>5}  delivered {self.delivered:>5}  lost {self.lost:>4}  "
                f"dup-on-wire {self.wire_duplicates:>4}  dup-dropped "
                f"{self.consumer_dropped_duplicates:>4}  dup-in-readings "
                f"{self.duplicates_in_readings:>3}  gw-drops {self.gateway_drops:>4}  "
                f"gaps {self.consumer_gaps:>4}")


def assert_durable_exact(table: dict[str, ClassCounts]) -> None:
    """0 lost and 0 duplicates in readings for the durable classes."""
    for stream in DURABLE:
        c = table[stream]
        assert c.lost == 0, c.line()
        assert c.duplicates_in_readings == 0, c.line()
        assert c.delivered == c.produced, c.line()
        assert c.stored_by_gateway == c.produced, c.line()


class Rig:
    """Starts and breaks the parts of a delivery path."""

    def __init__(self, workdir: Path, *, gateway_id: str = "gw-test", via_proxy: bool = False,
                 broker_persistent: bool = True, broker_extra: str = "",
                 streams: dict[str, str] | None = None, topic_prefix: str | None = None,
                 device_extra: str = "", amo_buffer: int = 100000, tap: bool = True,
                 gateway_extra: str = "", consumer_extra: str = "",
                 broker: Broker | None = None, urls: list[str] | None = None,
                 broker_keys: str = "") -> None:
        """`broker_extra` is appended to mosquitto.conf; `streams` (name -> delivery,
        all on the field `n`) replaces the default amo/alo/eo set and must keep
        `alo` and `eo`; `topic_prefix` sets broker.topic_prefix; `device_extra`
        is YAML added to the serial device's mapping (e.g. "max_line_bytes: 1KiB");
        `amo_buffer` is store.at_most_once_buffer; `tap=False` runs without the
        wire tap (so the consumer is the only subscriber); `gateway_extra` is YAML
        added at the top level of the gateway config (e.g. "confirmation: end-to-end"),
        `consumer_extra` at the top level of the consumer config. `broker` replaces
        mosquitto by another broker (tests/support/nats.py), `urls` gives both the gateway
        and the consumer that list of broker URLs, and `broker_keys` is YAML added to both
        broker sections (e.g. "protocol: '3.1.1'").
        """
        self.urls = urls
        self.broker_keys = broker_keys
        self.consumer_extra = consumer_extra
        self.gateway_extra = gateway_extra
        self.amo_buffer = amo_buffer
        self.workdir = workdir
        self.gateway_id = gateway_id
        self.streams = dict(streams) if streams is not None else dict(STREAMS)
        self.topic_prefix = topic_prefix
        self.device_extra = device_extra
        self.broker: Broker = broker if broker is not None else Mosquitto(
            workdir / "broker", persistent=broker_persistent, extra=broker_extra)
        if broker is None:
            self.broker.start()
        self.proxy = TcpProxy(self.broker.port) if via_proxy else None
        self.device = PtyDevice(workdir / "ttyTEST")
        self.next_n = 1
        self.sent: list[int] = []
        self.tap = WireTap(self.broker.port, f"gw/{gateway_id}/#") if tap else None
        if self.tap is not None:
            wait_for(self.tap.subscribed.is_set, timeout=10, what="wire tap subscribed")
        self.consumer_db = workdir / "consumer.sqlite"
        self.consumer = Service("consume", self._consumer_config(), workdir, "consumer")
        self.gateway = Service("run", self._gateway_config(), workdir, "gateway")

    # -- configs -------------------------------------------------------------
    def _gateway_config(self) -> Path:
        port = self.proxy.port if self.proxy else self.broker.port
        streams = "\n".join(
            f"      - {{name: {name}, field: n, delivery: {delivery}}}"
            for name, delivery in self.streams.items()
        )
        prefix = f"\n  topic_prefix: '{self.topic_prefix}'" if self.topic_prefix else ""
        device_extra = "".join(f"    {line}\n" for line in self.device_extra.splitlines())
        path = self.workdir / "gateway.yaml"
        path.write_text(f"""version: 1
gateway:
  id: {self.gateway_id}
  state_dir: {self.workdir / 'state'}
  summary_interval: 1s
broker:
  url: {self._url(port)}
  keepalive: 5s{prefix}
{self._broker_keys()}store:
  commit_interval: 50ms
  at_most_once_buffer: {self.amo_buffer}
devices:
  - id: dev
    driver: serial
    port: {self.device.link}
    reopen_max: 0.5s
{device_extra}    streams:
{streams}
{self.gateway_extra}""")
        return path

    def _url(self, port: int) -> str:
        return f"[{', '.join(self.urls)}]" if self.urls else f"mqtt://127.0.0.1:{port}"

    def _broker_keys(self) -> str:
        return "".join(f"  {line}\n" for line in self.broker_keys.splitlines())

    def _consumer_config(self) -> Path:
        path = self.workdir / "consumer.yaml"
        # The consumer reads the identity from the topic: it must know the gateway's prefix.
        template = (f"\n  topic_template: '{self.topic_prefix}/{{device}}/{{stream}}'"
                    if self.topic_prefix else "")
        path.write_text(f"""version: 1
broker:
  url: {self._url(self.broker.port)}
{self._broker_keys()}  client_id: consumer-{self.gateway_id}
  subscribe: gw/{self.gateway_id}/#
  keepalive: 5s{template}
database: {self.consumer_db}
commit_interval: 50ms
summary_interval: 1s
{self.consumer_extra}""")
        return path

    # -- starting the parts ----------------------------------------------------
    def start_consumer(self) -> None:
        """Start the consumer and wait until it has subscribed."""
        self.consumer.start()
        self.consumer.wait_log(r"subscribed to")

    def start_gateway(self) -> None:
        """Start the gateway and wait until it has opened the serial port."""
        self.gateway.start()
        self.gateway.wait_log(r"device=dev up")

    def restart_broker(self) -> None:
        """Start the broker again on the same port."""
        self.broker.start()

    def restart_broker_while_consumer_away(self) -> None:
        """100 lines delivered; the consumer stops and the broker is SIGKILLed; 100 lines
        stored meanwhile; the broker restarts (remembering only what its persistence
        kept) and answers 0x10 until the consumer is back; then 100 more lines."""
        self.start_consumer()
        self.start_gateway()
        self.send(100)
        self.wait_delivered()
        assert self.consumer.terminate() == 0
        self.broker.kill()
        self.send(100)
        self.wait_stored()
        self.restart_broker()
        self.gateway.wait_log(r"No matching subscribers \(0x10\)", timeout=40)
        self.start_consumer()
        self.send(100)

    def unplug_device(self) -> None:
        """Pull the serial device: its stable name goes first (as udev removes
        /dev/serial/by-id/...), then the pty closes. A symlink left dangling at
        /dev/pts/N could be reopened by the gateway once N is handed to some
        other pty on the machine. `device.replug()` puts both back."""
        if self.device.link.is_symlink():
            self.device.link.unlink()
        self.device.unplug()

    # -- the sensor ----------------------------------------------------------
    def send(self, count: int, per_second: float = 400.0) -> None:
        """Send `count` lines at a bounded rate."""
        gap = 1.0 / per_second
        for _ in range(count):
            self.device.send({"n": self.next_n})
            self.sent.append(self.next_n)
            self.next_n += 1
            time.sleep(gap)

    def wait_stored(self, timeout: float = 15.0) -> None:
        """Wait until the gateway has committed every durable reading sent so far."""
        wait_for(lambda: self.gateway_stored("alo") >= len(self.sent)
                 and self.gateway_stored("eo") >= len(self.sent),
                 timeout=timeout, what=f"gateway to store {len(self.sent)} readings per stream")

    def wait_delivered(self, timeout: float = 60.0) -> None:
        """Wait until every durable reading sent is in `readings`."""
        wanted = set(self.sent)
        wait_for(lambda: all(set(self.values(s)) >= wanted for s in DURABLE),
                 timeout=timeout, what="every durable reading in readings")

    def wait_delivered_or_gaps(self, timeout: float = 60.0) -> None:
        """Wait until the gateway's outbox is empty and the consumer has caught up.

        For runs where the broker may lose acknowledged readings: every durable
        reading then either arrived or is counted as a gap.
        """
        outbox = self.workdir / "state" / "outbox.sqlite"

        def settled() -> bool:
            pending = self._query(outbox, "SELECT count(*) FROM outbox")
            if not pending or pending[0][0] != 0:
                return False
            return all(
                self.counts(s).delivered + self.counts(s).consumer_gaps >= len(self.sent)
                for s in DURABLE)

        wait_for(settled, timeout=timeout, what="outbox drained and consumer caught up")

    # -- what the stores say ---------------------------------------------------
    def _query(self, path: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if not path.exists():
            return []
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def gateway_stored(self, stream: str) -> int:
        """Seqs handed out for a stream over all epochs (durable: readings stored)."""
        rows = self._query(self.workdir / "state" / "outbox.sqlite",
                           "SELECT coalesce(sum(last_seq), 0) FROM sequences WHERE stream = ?",
                           (stream,))
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def gateway_drops(self, stream: str) -> int:
        """Readings of a stream the gateway counted as dropped."""
        rows = self._query(self.workdir / "state" / "outbox.sqlite",
                           "SELECT coalesce(sum(count), 0) FROM drops WHERE stream = ?", (stream,))
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    def values(self, stream: str) -> list[int]:
        """The line numbers of the rows of a stream in `readings`."""
        rows = self._query(self.consumer_db,
                           "SELECT value FROM readings WHERE stream = ?", (stream,))
        return [int(str(v)) for (v,) in rows]

    def counts(self, stream: str) -> ClassCounts:
        """Produced, stored, delivered, lost and duplicated, for one stream."""
        values = self.values(stream)
        delivered = set(values)
        produced = len(self.sent)
        counters = self._query(self.consumer_db,
                               "SELECT coalesce(sum(duplicates), 0), coalesce(sum(gaps), 0) "
                               "FROM stream_counters WHERE stream = ?", (stream,))
        dropped_dups, gaps = counters[0] if counters else (0, 0)
        return ClassCounts(
            stream=stream,
            produced=produced,
            stored_by_gateway=(self.gateway_stored(stream)
                               if self.streams.get(stream, "at-most-once") != "at-most-once"
                               else 0),
            delivered=len(delivered),
            rows=len(values),
            lost=len(set(self.sent) - delivered),
            wire_duplicates=self.tap.duplicates(stream) if self.tap is not None else -1,
            duplicates_in_readings=len(values) - len(delivered),
            consumer_dropped_duplicates=int(dropped_dups),  # type: ignore[call-overload]
            gateway_drops=self.gateway_drops(stream),
            consumer_gaps=int(gaps),  # type: ignore[call-overload]
            delivery=self.streams.get(stream, ""),
        )

    def report(self, title: str) -> dict[str, ClassCounts]:
        """Counts per class, printed as a table (pytest shows it with -s or on failure)."""
        table = {s: self.counts(s) for s in self.streams}
        print(f"\n{title}: broker kills {self.broker.kills}, gateway kills {self.gateway.kills}, "
              f"consumer kills {self.consumer.kills}, unplugs {self.device.unplugs}"
              + (f", stalls {self.proxy.stalls}, cuts {self.proxy.cuts}" if self.proxy else ""))
        for counts in table.values():
            print("  " + counts.line())
        return table

    @property
    def store_path(self) -> Path:
        """The gateway's SQLite outbox."""
        return self.workdir / "state" / "outbox.sqlite"

    def store_query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Read the gateway's store (read-only connection; [] when not readable yet)."""
        return self._query(self.store_path, sql, args)

    def consumer_query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Read the consumer's database (read-only connection; [] when not readable yet)."""
        return self._query(self.consumer_db, sql, args)

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run `python -m gateway ARGS` as a real process in the rig's directory."""
        return run_cli(*args, cwd=self.workdir, timeout=timeout)

    def status(self) -> dict[str, object]:
        """`python -m gateway status --config <gateway.yaml> --json`, parsed."""
        done = self.cli("status", "--config", str(self.gateway.config), "--json")
        assert done.returncode == 0, f"status exited {done.returncode}: {done.stderr}"
        report: dict[str, object] = json.loads(done.stdout)
        return report

    def close(self) -> None:
        """Stop everything the rig started."""
        self.gateway.ensure_stopped()
        self.consumer.ensure_stopped()
        if self.tap is not None:
            self.tap.close()
        if self.proxy is not None:
            self.proxy.close()
        self.broker.stop()
        self.device.close()


def run_cli(*args: str, cwd: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`python -m gateway ARGS` as a real process; its exit code and output."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
