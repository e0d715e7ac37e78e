"""Figure 1: sustained durable throughput, device -> store -> broker -> consumer commit.

    python -m bench.throughput [--readings N] [--classes a,b]

Per delivery class: a pty sensor fed as fast as the gateway drains it, one
stream, N readings; the rate is readings in the consumer's `readings` divided
by the time from the first line written to the last row's commit. Side by
side, in the same run and on the same broker config: raw paho publisher ->
subscriber at the class's QoS, and mosquitto's C clients. Also the CPU
seconds the gateway and the consumer spent per 1,000 readings. Target:
0.8x raw paho or better for at-least-once and exactly-once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.baselines import c_client, raw_paho
from bench.harness import (
    print_header,
    print_table,
    ratio,
    row_times,
    sample,
    wait_rows,
    workdir,
)
from bench.pipeline import pipeline
from gateway.core.delivery import DELIVERY_NAMES, DeliveryClass

CLASSES = ("at-least-once", "exactly-once", "at-most-once")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--readings", type=int, default=30000, help="readings per class")
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    classes = [c for c in args.classes.split(",") if c]
    unknown = [c for c in classes if c not in DELIVERY_NAMES]
    if unknown or args.readings < 100:
        parser.error(f"--classes takes {', '.join(CLASSES)}; --readings at least 100")
    n = args.readings
    print_header("Sustained throughput: pty -> gateway -> mosquitto -> consumer",
                 {"readings per class": n, "payload": "~190 B envelope",
                  "broker receive maximum": 1000, "gateway config": "shipped defaults"})
    rows = []
    for delivery in classes:
        qos = DeliveryClass(delivery).qos
        keep = args.workdir / delivery if args.workdir else None
        with workdir(keep) as where, pipeline(where, {"s": delivery}) as run:
            before_gw, before_c = sample(run.gateway_pid), sample(run.consumer_pid)
            fed = run.feeder.send(n)
            got = wait_rows(run.db, n, timeout=600,
                            settle=5.0 if delivery == "at-most-once" else None)
            after_gw, after_c = sample(run.gateway_pid), sample(run.consumer_pid)
            times = row_times(run.db)
            end = max(rx for _, rx in times)
            rate = got / (end - fed["first"])
            raw = raw_paho(run.broker.port, qos, n)
            c = c_client(run.broker.port, qos, n)
        rows.append((delivery, qos, round(rate), round(raw.rate), ratio(rate, raw.rate),
                     round(c.rate) if c else "-", ratio(rate, c.rate) if c else "-",
                     n - got,
                     (after_gw.cpu_s - before_gw.cpu_s) / got * 1000,
                     (after_c.cpu_s - before_c.cpu_s) / got * 1000))
    print_table(("class", "QoS", "gateway msg/s", "raw paho msg/s", "vs raw paho",
                 "C clients msg/s", "vs C clients", "lost", "gateway CPU s/1000",
                 "consumer CPU s/1000"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
