"""Figure 5: latency, reading taken -> row committed in the consumer's `readings`.

    python -m bench.latency [--rate 1000] [--seconds 20] [--classes a,b]

Per delivery class, one stream on a fresh pipeline: a pty sensor sends RATE
readings/s, paced, for SECONDS; each row's latency is its `received_at`
(set when the consumer's commit begins) minus its `ts` (set when the
gateway read the line). Reported: p50, p99 and max, and the readings lost.
Side by side, on the same broker right after: raw paho publisher ->
subscriber at the class's QoS and the same paced rate, latency from the
publish call to the subscriber's arrival. The issue sets no target for this
figure; the drain benchmark's target for live readings, p99 under 1 s, is
the one to compare with.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from bench.baselines import raw_paho
from bench.harness import (
    percentile,
    print_header,
    print_table,
    ratio,
    row_times,
    wait_rows,
    workdir,
)
from bench.pipeline import pipeline
from gateway.core.delivery import DELIVERY_NAMES, DeliveryClass

CLASSES = ("at-least-once", "exactly-once", "at-most-once")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="readings per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per class")
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    classes = [c for c in args.classes.split(",") if c]
    unknown = [c for c in classes if c not in DELIVERY_NAMES]
    if unknown or not classes:
        parser.error(f"--classes takes {', '.join(CLASSES)}")
    if not 1 <= args.rate <= 5000 or not 2 <= args.seconds <= 600:
        parser.error("--rate from 1 to 5000; --seconds from 2 to 600")
    count = int(args.rate * args.seconds)
    print_header("Latency: reading taken -> row committed by the consumer",
                 {"rate": f"{args.rate:g}/s paced", "seconds per class": args.seconds,
                  "readings per class": count, "streams": 1,
                  "gateway and consumer config": "shipped defaults"})
    rows = []
    for delivery in classes:
        qos = DeliveryClass(delivery).qos
        keep = args.workdir / delivery if args.workdir else None
        with workdir(keep) as where, pipeline(where, {"s": delivery}) as run:
            run.gateway.wait_log(r"device=dev up", timeout=60)
            feeding = threading.Thread(target=run.feeder.send, args=(count, args.rate))
            feeding.start()
            feeding.join()
            got = wait_rows(run.db, count, timeout=300,
                            settle=5.0 if delivery == "at-most-once" else None)
            latencies = [rx - ts for ts, rx in row_times(run.db)]
            raw = raw_paho(run.broker.port, qos, count, rate=args.rate)
        p99, raw_p99 = percentile(latencies, 99), percentile(raw.latencies, 99)
        rows.append((delivery, qos, got, f"{percentile(latencies, 50) * 1000:.1f} ms",
                     f"{p99 * 1000:.1f} ms", f"{max(latencies) * 1000:.1f} ms",
                     f"{percentile(raw.latencies, 50) * 1000:.1f} ms", f"{raw_p99 * 1000:.1f} ms",
                     ratio(p99, raw_p99), count - got, count - raw.count))
    print_table(("class", "QoS", "readings", "p50", "p99", "max", "raw paho p50", "raw paho p99",
                 "p99 vs raw paho", "lost", "raw paho lost"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
