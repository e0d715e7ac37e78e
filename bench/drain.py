"""Figure 2: draining a backlog of stored readings once the broker is back.

    python -m bench.drain [--readings 1000000] [--live-rate 100]

The gateway's store is filled with N at-least-once readings (through
`Outbox.commit`, the gateway's own write path) as if taken while the broker
was away; the broker is stopped (the consumer's session saved), the gateway
starts, a pty sensor keeps sending live readings, then the broker comes back
and the consumer reconnects. Reported: time to drain and messages/s (from the
first backlog row committed by the consumer to the last, and from the broker's
return), the latency of live readings taken during the drain, from the first
backlog row committed to the last (reading taken -> row committed by the
consumer; target p99 under 1 s), and the gateway's RSS
over the drain (target: flat). Side by side: raw paho QoS 1 through the same
broker.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from pathlib import Path

from bench.baselines import raw_paho
from bench.harness import (
    BROKER_EXTRA,
    GATEWAY_ID,
    Feeder,
    consumer_config,
    count_rows,
    gateway_config,
    percentile,
    print_header,
    print_table,
    ratio,
    row_times,
    sample,
    service,
    start,
    stop,
    workdir,
)
from gateway.store.outbox import NewReading, Outbox
from tests.support.broker import Mosquitto
from tests.support.waiting import wait_for

FILL_BATCH = 20_000


def fill(store: Path, count: int) -> float:
    """Store `count` readings of stream `backlog` through the outbox; seconds taken."""
    began = time.monotonic()
    box = Outbox.open(store, GATEWAY_ID, durability="normal", max_bytes=8 << 30)
    topic = f"gw/{GATEWAY_ID}/dev/backlog"
    ts = time.time() - 3600
    done = 0
    while done < count:
        n = min(FILL_BATCH, count - done)
        readings = [NewReading("dev", "backlog", 1, ts + (done + i) / 1000, done + i, None, topic)
                    for i in range(n)]
        box.commit(readings, [], [], Counter())
        done += n
    box.close(clean=True)
    return time.monotonic() - began


class LiveSensor:
    """Live readings at a steady rate until stopped, from a thread."""

    def __init__(self, feeder: Feeder, rate: float) -> None:
        self.feeder, self.rate = feeder, rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        chunk = max(1, int(self.rate))  # one second of lines per request
        while not self._stop.is_set():
            self.feeder.send(chunk, self.rate, start=self.sent + 1)
            self.sent += chunk

    def stop(self) -> None:
        """Stop after the current second of lines."""
        self._stop.set()
        self._thread.join(30)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__)
    parser.add_argument("--readings", type=int, default=1_000_000, help="readings in the backlog")
    parser.add_argument("--live-rate", type=float, default=100.0, help="live readings per second")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if args.readings < 1000 or not 1 <= args.live_rate <= 5000:
        parser.error("--readings at least 1000; --live-rate from 1 to 5000")
    n = args.readings
    print_header("Backlog drain after the broker comes back",
                 {"backlog": n, "live readings/s": args.live_rate, "class": "at-least-once",
                  "gateway config": "shipped defaults"})
    with workdir(args.workdir) as where:
        broker = Mosquitto(where / "broker", persistent=False,
                           extra=BROKER_EXTRA + "persistence true\n")
        broker.start()
        db = where / "consumer.sqlite"
        consumer = service("consume", consumer_config(where, broker.port, db), where, "consumer")
        start(consumer, r"subscribed to")
        stop(consumer)
        broker.stop()  # saves the consumer's session: its messages queue while it is away
        filled = fill(where / "state" / "outbox.sqlite", n)
        feeder = Feeder(where / "ttyBENCH")
        gateway = service("run", gateway_config(where, broker.port, feeder.link,
                                                {"live": "at-least-once"},
                                                store="  max_bytes: 4GiB"), where, "gateway")
        try:
            start(gateway, r"device=dev up", timeout=300)
            live = LiveSensor(feeder, args.live_rate)
            gateway.wait_log(r"cannot reach broker", timeout=30)
            assert gateway.proc is not None
            rss_before = sample(gateway.proc.pid).rss_kib
            back = time.time()
            broker.start()
            start(consumer, r"subscribed to")
            rss: list[int] = []

            def drained() -> bool:
                assert gateway.proc is not None
                rss.append(sample(gateway.proc.pid).rss_kib)
                return bool(count_rows(db, "backlog") >= n)

            wait_for(drained, timeout=3600, interval=0.5, what="the backlog drained")
            live.stop()
            wait_for(lambda: count_rows(db, "live") >= live.sent, timeout=120, interval=0.2,
                     what="every live reading delivered")
            base = raw_paho(broker.port, 1, 50_000)
        finally:
            stop(gateway)
            stop(consumer)
            feeder.close()
            broker.stop()
        backlog = row_times(db, "backlog")
        first = min(rx for _, rx in backlog)
        last = max(rx for _, rx in backlog)
        # Live readings taken once the drain was under way (those taken before the gateway
        # reconnected were stored behind the backlog, as part of it).
        during = [rx - ts for ts, rx in row_times(db, "live") if first <= ts <= last]
        lost = n + live.sent - count_rows(db)
    rate = n / (last - first)
    print_table(("measure", "value"), [
        ("backlog stored beforehand", f"{n:,} readings in {filled:.0f} s"),
        ("drain time from the broker's return", f"{last - back:.1f} s"),
        ("drain time, first to last backlog row committed", f"{last - first:.1f} s"),
        ("drain rate", f"{rate:,.0f} msg/s"),
        ("raw paho QoS 1, same broker", f"{base.rate:,.0f} msg/s"),
        ("drain rate vs raw paho", ratio(rate, base.rate)),
        ("live readings taken during the drain", f"{len(during):,}"),
        ("live latency p50 / p99 / max", f"{percentile(during, 50):.3f} / "
                                         f"{percentile(during, 99):.3f} / "
                                         f"{max(during, default=float('nan')):.3f} s"),
        ("gateway RSS before / max / last during the drain",
         f"{rss_before / 1024:.1f} / {max(rss) / 1024:.1f} / {rss[-1] / 1024:.1f} MiB"),
        ("readings lost (backlog + live)", lost),
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
