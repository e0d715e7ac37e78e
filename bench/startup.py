"""Figure 5: starting on a big backlog, time to the first PUBLISH and memory.

    python -m bench.startup [--readings 1000000] [--watch 10]

The gateway's store is filled with N at-least-once readings (through
`Outbox.commit`, the gateway's own write path) and stopped cleanly; a fresh
mosquitto runs, and a subscriber on the gateway's topics notes when the
first message arrives. The gateway is started three times against it: after
the clean stop of the fill, after its own clean stop (SIGTERM), and after a
SIGKILL (an unclean stop: the whole store is checked before anything is
sent). Before each start the store's pages are dropped from the page cache
(posix_fadvise DONTNEED), as after a reboot, so what is read at start is
read from the disk. Reported per start: seconds from the process start to the first
PUBLISH received, and the gateway's RSS at that moment and its maximum over
the next WATCH seconds of draining (target: the first PUBLISH within 2 s,
RSS flat). Side by side: the floor, a bare Python process that opens the
same store, reads the oldest row and publishes it with raw paho.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.drain import fill
from bench.harness import (
    Feeder,
    broker,
    gateway_config,
    print_header,
    print_table,
    ratio,
    sample,
    service,
    stop,
    workdir,
)
from tests.support.procs import REPO, Service
from tests.support.waiting import wait_for

# The floor: open the store, read its oldest row, publish it at QoS 1 with raw paho.
_BARE = """
import sqlite3, sys, paho.mqtt.client as mqtt
conn = sqlite3.connect(sys.argv[1])
topic, payload = conn.execute("SELECT topic, payload FROM outbox ORDER BY id LIMIT 1").fetchone()
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.connect("127.0.0.1", int(sys.argv[2]))
client.loop_start()
client.publish(topic, payload, 1).wait_for_publish(10)
client.disconnect()
"""


class FirstMessage:
    """A subscriber on the gateway's topics: when the next message arrives (monotonic)."""

    def __init__(self, port: int) -> None:
        self.at: float | None = None
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("gw/#", 0)
        self.client.loop_start()
        wait_for(self._ready.is_set, timeout=10, what="the subscriber")

    def _on_message(self, *_: object) -> None:
        if self.at is None:
            self.at = time.monotonic()

    def reset(self) -> None:
        """Wait until the broker has delivered what an earlier run sent (no message for a
        second), then for the next first message."""
        self.at = None
        quiet_since = [time.monotonic()]

        def quiet() -> bool:
            if self.at is not None:
                self.at, quiet_since[0] = None, time.monotonic()
            return time.monotonic() - quiet_since[0] > 1.0

        wait_for(quiet, timeout=120, interval=0.05, what="the subscriber to go quiet")

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


def drop_cache(store: Path) -> None:
    """Drop the store's pages (and its WAL's) from the page cache."""
    for path in (store, store.with_name(store.name + "-wal")):
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure_start(gateway: Service, first: FirstMessage, watch: float, store: Path
                  ) -> tuple[float, int, int]:
    """Start the gateway; (seconds to the first PUBLISH, RSS then, max RSS over `watch` s)."""
    first.reset()
    drop_cache(store)
    began = time.monotonic()
    gateway.start()
    wait_for(lambda: first.at is not None, timeout=60, interval=0.01,
             what="the first PUBLISH from the gateway")
    assert gateway.proc is not None and first.at is not None
    took = first.at - began
    rss_first = sample(gateway.proc.pid).rss_kib
    rss_max, until = rss_first, time.monotonic() + watch
    while time.monotonic() < until:
        rss_max = max(rss_max, sample(gateway.proc.pid).rss_kib)
        time.sleep(0.2)
    return took, rss_first, rss_max


def bare_start(store: Path, port: int, first: FirstMessage) -> float:
    """Seconds from starting the bare process to its PUBLISH arriving."""
    first.reset()
    drop_cache(store)
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", _BARE, str(store), str(port)], cwd=REPO, check=True,
                   timeout=60)
    wait_for(lambda: first.at is not None, timeout=30, interval=0.01, what="the bare PUBLISH")
    assert first.at is not None
    return first.at - began


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--readings", type=int, default=1_000_000, help="readings in the backlog")
    parser.add_argument("--watch", type=float, default=10.0, help="seconds of RSS after the start")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if args.readings < 1000 or not 1 <= args.watch <= 600:
        parser.error("--readings at least 1000; --watch from 1 to 600")
    n = args.readings
    print_header("Start on a big backlog", {"backlog": n, "class": "at-least-once",
                                            "gateway config": "shipped defaults"})
    rows: list[tuple[object, ...]] = []
    with workdir(args.workdir) as where, broker(where / "broker") as mosquitto:
        store = where / "state" / "outbox.sqlite"
        filled = fill(store, n)
        size = store.stat().st_size
        first = FirstMessage(mosquitto.port)
        feeder = Feeder(where / "ttyBENCH")
        config = gateway_config(where, mosquitto.port, feeder.link, {"live": "at-least-once"},
                                store="  max_bytes: 4GiB")
        gateway = service("run", config, where, "gateway")
        try:
            floor = bare_start(store, mosquitto.port, first)
            for label, end in (("after the fill's clean stop", "term"),
                               ("after a clean stop (SIGTERM)", "kill"),
                               ("after a SIGKILL (whole store checked)", "term")):
                took, rss_first, rss_max = measure_start(gateway, first, args.watch, store)
                rows.append((label, f"{took:.2f} s", ratio(took, floor),
                             f"{rss_first / 1024:.1f} / {rss_max / 1024:.1f} MiB"))
                if end == "kill":
                    gateway.kill()
                else:
                    stop(gateway)
        finally:
            gateway.ensure_stopped()
            feeder.close()
            first.close()
    print(f"store: {n:,} readings, {size / 1024**2:.0f} MiB, filled in {filled:.0f} s")
    print_table(("start", "to first PUBLISH", "vs bare process", "RSS at it / max next "
                 f"{args.watch:.0f} s"),
                [("bare: open, read oldest row, raw paho publish", f"{floor:.2f} s", "1.00x", "-"),
                 *rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
