"""Batching (wire format v2) against one reading per message, side by side in one run.

    python -m bench.batching [--seconds S] [--lines N] [--quick]

1. Bytes on the wire per reading: a pty sensor at 20 lines/s, 3 at-least-once
   streams, shipped defaults (end-to-end confirmation) with and without
   `batching: {max_readings: 100, max_delay: 2s, compression: zlib}`; the bytes
   are counted by a TCP proxy between the gateway and the broker, both
   directions, MQTT as it crosses the socket (confirmations included).
   Target: batched at most 0.3x unbatched.
2. The added latency: reading taken -> row committed by the consumer, p50 and
   p99, in the same two runs (max_delay bounds what batching adds).
3. Durable throughput: the sensor as fast as the gateway drains it, N lines of
   3 streams, batched, in readings/s, against raw paho QoS 1 messages/s on
   the same broker (bench/raw_paho.py), with the shipped `store.commit_batch`
   (500) and with 5000. Target: at least 3x.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.baselines import raw_paho
from bench.harness import (
    Feeder,
    broker,
    consumer_config,
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
    wait_rows,
    workdir,
)
from tests.support.proxy import TcpProxy

STREAMS = {"s1": "at-least-once", "s2": "at-least-once", "s3": "at-least-once"}
BATCHING = "batching:\n  max_readings: 100\n  max_delay: 2s\n  compression: zlib\n"
RATE = 20.0  # lines per second, each giving one reading per stream
# The shipped group commit (500 readings) bounds the durable rate once the MQTT side is
# batched; a larger one shows what the link side allows.
COMMIT_BATCHES = (500, 5000)


@dataclass
class Run:
    """The parts of one run: the proxy counts the gateway's bytes."""

    proxy: TcpProxy
    feeder: Feeder
    db: Path
    port: int
    pids: tuple[int, int]  # the gateway's and the consumer's


@contextmanager
def counted_pipeline(where: Path, top: str, store: str = "") -> Iterator[Run]:
    """Broker, consumer, feeder, a counting proxy and the gateway behind it."""
    with ExitStack() as stack:
        b = stack.enter_context(broker(where / "broker"))
        db = where / "consumer.sqlite"
        consumer = service("consume", consumer_config(where, b.port, db), where, "consumer")
        start(consumer, r"subscribed to")
        stack.callback(stop, consumer)
        proxy = TcpProxy(b.port)
        stack.callback(proxy.close)
        feeder = Feeder(where / "ttyBENCH")
        stack.callback(feeder.close)
        gateway = service("run", gateway_config(where, proxy.port, feeder.link, STREAMS,
                                                store=store, top=top), where, "gateway")
        start(gateway, r"device=dev up", timeout=120)
        stack.callback(stop, gateway)
        assert gateway.proc is not None and consumer.proc is not None
        yield Run(proxy, feeder, db, b.port, (gateway.proc.pid, consumer.proc.pid))


def paced(where: Path, top: str, seconds: float) -> tuple[float, list[float], int]:
    """Bytes per reading, latencies and readings lost, at RATE lines per second."""
    lines = int(RATE * seconds)
    wanted = lines * len(STREAMS)
    with counted_pipeline(where, "confirmation: end-to-end\n" + top) as run:
        before = run.proxy.bytes_forwarded
        feeding = threading.Thread(target=run.feeder.send, args=(lines, RATE))
        feeding.start()
        feeding.join()
        got = wait_rows(run.db, wanted, timeout=120 + seconds)
        used = run.proxy.bytes_forwarded - before
        latencies = [rx - ts for ts, rx in row_times(run.db)]
    return used / max(1, got), latencies, wanted - got


def throughput(where: Path, lines: int, commit_batch: int) -> tuple[object, ...]:
    """Batched durable readings/s, raw paho QoS 1 messages/s on the same broker, the ratio,
    readings lost, and CPU seconds per 1000 readings of the gateway and of the consumer."""
    wanted = lines * len(STREAMS)
    store = f"  durability: normal\n  commit_batch: {commit_batch}"
    with counted_pipeline(where, "confirmation: broker\n" + BATCHING, store) as run:
        cpu = [sample(pid).cpu_s for pid in run.pids]
        fed = run.feeder.send(lines)
        got = wait_rows(run.db, wanted, timeout=900)
        cpu = [(sample(pid).cpu_s - before) / got * 1000 for pid, before in zip(run.pids, cpu,
                                                                               strict=True)]
        end = max(rx for _, rx in row_times(run.db))
        rate = got / (end - fed["first"])
        raw = raw_paho(run.port, 1, min(lines * len(STREAMS), 30000))
    return (round(rate), round(raw.rate), ratio(rate, raw.rate), wanted - got,
            f"{cpu[0]:.3f}", f"{cpu[1]:.3f}")


def _paced_table(args: argparse.Namespace, seconds: float) -> None:
    figures = {}
    for name, top in (("unbatched", ""), ("batched", BATCHING)):
        keep = args.workdir / name if args.workdir else None
        with workdir(keep) as where:
            figures[name] = paced(where, top, seconds)
    plain, batched = figures["unbatched"], figures["batched"]
    print_table(("run", "bytes/reading", "vs unbatched", "latency p50", "latency p99", "lost"),
                [(name, f"{b:.1f}", ratio(b, plain[0]), f"{percentile(lat, 50) * 1000:.0f} ms",
                  f"{percentile(lat, 99) * 1000:.0f} ms", lost)
                 for name, (b, lat, lost) in figures.items()])
    added = percentile(batched[1], 99) - percentile(plain[1], 99)
    print(f"\nadded latency p99: {added * 1000:.0f} ms (max_delay 2000 ms); "
          f"bytes per reading {batched[0] / plain[0]:.3f}x (target 0.3x or less)\n")


def main(argv: list[str] | None = None) -> int:
    """Run the three figures; print one table each."""
    parser = argparse.ArgumentParser(prog="python -m bench.batching", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of the paced runs")
    parser.add_argument("--lines", type=int, default=20000, help="lines of the throughput run")
    parser.add_argument("--quick", action="store_true", help="20 s paced, 5000 lines")
    parser.add_argument("--only", choices=("paced", "throughput"), help="run one part")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    seconds, lines = (20.0, 5000) if args.quick else (args.seconds, args.lines)
    if not 5 <= seconds <= 3600 or lines < 100:
        parser.error("--seconds from 5 to 3600; --lines at least 100")
    print_header("Batching: wire format v2 against one reading per message",
                 {"paced": f"{RATE:g} lines/s x {len(STREAMS)} at-least-once streams, "
                           f"{seconds:g} s", "batching": "max_readings 100, max_delay 2s, zlib",
                  "bytes": "counted by a TCP proxy, both directions",
                  "throughput": f"{lines} lines x {len(STREAMS)} streams, unpaced"})
    if args.only != "throughput":
        _paced_table(args, seconds)
    if args.only == "paced":
        return 0
    rows = []
    for commit_batch in COMMIT_BATCHES:
        keep = args.workdir / f"throughput-{commit_batch}" if args.workdir else None
        with workdir(keep) as where:
            rows.append((f"batched, store.commit_batch {commit_batch}",
                         *throughput(where, lines, commit_batch)))
    print_table(("run", "readings/s", "raw paho QoS 1 msg/s", "vs raw paho", "lost",
                 "gateway CPU s/1000", "consumer CPU s/1000"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
