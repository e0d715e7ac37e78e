"""Figure 6: the consumer's sustained dedup + commit rate, 1,000 streams, 10% duplicates.

    python -m bench.consumer_rate [--messages 100000] [--streams 1000] [--duplicates 0.1]
                                  [--databases sqlite,postgresql]

The consumer (a real `python -m gateway consume` process, shipped defaults,
SQLite) subscribes once and stops; its persistent session keeps messages
queued at the broker. A paho publisher then sends N valid envelopes at QoS 1
(waiting for every PUBACK) on `gw/bench/dev<k>/s<j>`: 1,000 (device, stream)
pairs in turn, seqs increasing per stream, and a share of the messages
(10% by default, chosen by a seeded random) re-sends of an earlier message of
the same stream. The consumer starts again; the time is from its start until
`readings` holds every distinct reading and `stream_counters` counts every
re-send as a duplicate (polled every 0.1 s, read-only). Reported: messages/s
and rows/s, the consumer's CPU seconds per 1,000 messages, and correctness
(rows == distinct readings, duplicates counted == sent, gaps 0).

With `--databases sqlite,postgresql` the drain runs once per backend, the
PostgreSQL one into a schema of its own (dropped afterwards) on the server at
`postgresql://postgres@127.0.0.1:5432/test` (tests/support/postgres.py).

Side by side, in the same run on the same broker: the same drain into a raw
paho subscriber with a persistent session (`bench/raw_paho.py sub
--persistent`: subscribed once, stopped, N envelope-sized messages published
on as many topics, started again and timed to its last arrival); the ratio
is the consumer's rate over that.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.harness import (
    GATEWAY_ID,
    broker,
    consumer_config,
    count_rows,
    print_header,
    print_table,
    ratio,
    sample,
    service,
    start,
    stop,
    workdir,
)
from bench.raw_paho import payload, publish_all
from gateway.core.envelope import Envelope, encode
from gateway.core.identity import new_epoch
from tests.support.postgres import own_schema
from tests.support.procs import REPO
from tests.support.waiting import wait_for

RAW_CLIENT_ID = "bench-raw-drain"


def messages(count: int, streams: int, share: float, seed: int) -> tuple[list[tuple[str, bytes]], int]:
    """`count` (topic, payload) envelopes over `streams` streams in turn; the duplicates among them.

    A duplicate is an earlier message of the same stream sent again, byte for byte.
    """
    rng = random.Random(seed)
    epoch = new_epoch(1.8e9, "0b5e55ed")
    sent: list[list[bytes]] = [[] for _ in range(streams)]
    out: list[tuple[str, bytes]] = []
    # Past the first round every stream has an earlier message to send again.
    resends = set(rng.sample(range(streams, count), min(count - streams, round(count * share))))
    base_ts = time.time() - 3600
    for i in range(count):
        k = i % streams
        device, stream = f"dev{k // 4}", f"s{k % 4}"
        topic = f"gw/{GATEWAY_ID}/{device}/{stream}"
        earlier = sent[k]
        if i in resends:
            out.append((topic, earlier[rng.randrange(len(earlier))]))
            continue
        seq = len(earlier) + 1
        body = encode(Envelope(GATEWAY_ID, epoch, device, stream, seq, base_ts + i / 1000,
                               round(20 + rng.random() * 5, 2), "°C"))
        earlier.append(body)
        out.append((topic, body))
    return out, len(resends)


def publish(port: int, batch: list[tuple[str, bytes]]) -> float:
    """Publish every message at QoS 1 with raw paho; seconds until the last is acknowledged."""
    start, end, settled = publish_all(port, len(batch), batch.__getitem__, 1)
    if settled < len(batch):
        raise RuntimeError(f"only {settled} of {len(batch)} publishes acknowledged")
    return end - start


_COUNTERS = "SELECT coalesce(sum(duplicates), 0), coalesce(sum(gaps), 0) FROM stream_counters"


def counters(db: Path) -> tuple[int, int]:
    """Sum of duplicates and of gaps over `stream_counters` (0, 0 before the table exists)."""
    if not db.exists():
        return 0, 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            dups, gaps = conn.execute(_COUNTERS).fetchone()
        except sqlite3.OperationalError:
            return 0, 0
    return int(dups), int(gaps)


class Target:
    """Where a drain is stored: `database:` of the consumer config, and its figures."""

    def __init__(self, kind: str, database: str) -> None:
        self.kind = kind
        self.database = database

    def figures(self) -> tuple[int, int, int]:
        """(rows, duplicates counted, gaps) so far."""
        if self.kind == "sqlite":
            return (count_rows(Path(self.database)), *counters(Path(self.database)))
        import psycopg  # noqa: PLC0415 - only for the PostgreSQL drain

        with psycopg.connect(self.database, autocommit=True, connect_timeout=5) as conn:
            try:
                rows = conn.execute("SELECT count(*) FROM readings").fetchone()
                dups, gaps = conn.execute(_COUNTERS).fetchone() or (0, 0)
            except psycopg.errors.UndefinedTable:
                return 0, 0, 0
        return int(rows[0] if rows else 0), int(dups), int(gaps)


@contextlib.contextmanager
def target(kind: str, where: Path) -> Iterator[Target]:
    """A fresh database of `kind`: a SQLite file, or a PostgreSQL schema dropped after."""
    if kind == "sqlite":
        yield Target(kind, str(where / "consumer-sqlite.sqlite"))
        return
    with own_schema("bench_consumer") as url:
        yield Target(kind, url)


def raw_sub(port: int, count: int) -> subprocess.Popen[str]:
    """A raw paho subscriber to `base/#` with a persistent session, once it has subscribed."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.raw_paho", "sub", str(port), "base/#",
                             "1", str(count), "--persistent", RAW_CLIENT_ID], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "subscribed":
        proc.kill()
        proc.wait(10)
        raise RuntimeError("raw paho subscriber did not subscribe")
    return proc


def raw_drain(port: int, topics: list[str]) -> tuple[float, int]:
    """Queue one raw payload per topic for a stopped persistent subscriber, then time its
    drain from its start to its last arrival; (seconds, messages received)."""
    first = raw_sub(port, len(topics))
    first.terminate()  # the session (expiry 1 h) outlives the connection
    first.wait(10)
    publish(port, [(topic.replace("gw/", "base/", 1), payload(n)) for n, topic in enumerate(topics)])
    began = time.time()
    again = raw_sub(port, len(topics))
    out, _ = again.communicate(timeout=900)
    got = json.loads(out)
    return got["last"] - began, int(got["count"])


def drain(kind: str, into: Target, where: Path, port: int, batch: list[tuple[str, bytes]],
          distinct: int, dups: int) -> tuple[str, float, float, int, int, int, str]:
    """Queue `batch` for a stopped consumer, start it and time it until every distinct
    reading is stored and every re-send counted: (kind, seconds, CPU s, rows, duplicates
    counted, gaps, peak RSS MiB of the first quarter of the drain -> of the last)."""
    config = consumer_config(where, port, into.database)
    consumer = service("consume", config, where, f"consumer-{kind}")
    try:
        start(consumer, r"subscribed to")
        stop(consumer)
        publish(port, batch)
        began = time.time()
        consumer.start()
        rss: list[int] = []

        def complete() -> bool:
            if consumer.proc is not None and consumer.proc.poll() is not None:
                raise RuntimeError(f"the consumer exited with {consumer.proc.returncode}; "
                                   f"see {consumer.log_path}")
            with contextlib.suppress(OSError):
                rss.append(sample(consumer.proc.pid).rss_kib if consumer.proc else 0)
            rows, counted, _ = into.figures()
            return rows >= distinct and counted >= dups

        wait_for(complete, timeout=900, interval=0.1, what="the backlog stored")
        took = time.time() - began
        assert consumer.proc is not None
        cpu = sample(consumer.proc.pid).cpu_s
    finally:
        stop(consumer)
    rows, counted, gaps = into.figures()
    quarter = max(1, len(rss) // 4)
    memory = (f"{max(rss[:quarter]) / 1024:.1f} -> {max(rss[-quarter:]) / 1024:.1f}"
              if rss else "-")
    return kind, took, cpu, rows, counted, gaps, memory


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench.consumer_rate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="messages queued")
    parser.add_argument("--streams", type=int, default=1000, help="distinct (device, stream) pairs")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share of re-sends")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--databases", default="sqlite",
                        help="comma-separated backends to drain into: sqlite, postgresql")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    if not 1000 <= args.messages <= 2_000_000:
        parser.error("--messages from 1000 to 2000000")
    if not 1 <= args.streams <= args.messages // 2:
        parser.error("--streams from 1 to half of --messages")
    if not 0 <= args.duplicates <= 0.5:
        parser.error("--duplicates from 0 to 0.5")
    args.databases = args.databases.split(",")
    if not args.databases or not set(args.databases) <= {"sqlite", "postgresql"}:
        parser.error("--databases: sqlite, postgresql or both, comma-separated")
    batch, dups = messages(args.messages, args.streams, args.duplicates, args.seed)
    distinct = args.messages - dups
    size = sum(len(body) for _, body in batch) // len(batch)
    print_header("Consumer: sustained dedup + commit rate of a queued backlog",
                 {"messages": args.messages, "streams": args.streams,
                  "duplicates": f"{dups} ({dups / args.messages:.1%})", "distinct": distinct,
                  "envelope": f"~{size} B (raw paho payload ~{len(payload(0))} B)", "QoS": 1,
                  "seed": args.seed, "consumer config": "shipped defaults",
                  "databases": ", ".join(args.databases)})
    table = []
    with workdir(args.workdir) as where, broker(where / "broker") as b:
        for kind in args.databases:
            with target(kind, where) as into:
                table.append(drain(kind, into, where, b.port, batch, distinct, dups))
        raw_took, raw_got = raw_drain(b.port, [topic for topic, _ in batch])
    raw_rate = raw_got / raw_took
    print_table(("drain", "messages", "seconds", "msg/s", "rows/s", "vs raw paho",
                 "CPU s/1000 msg", "rows / distinct", "duplicates counted / sent", "gaps",
                 "RSS MiB, first -> last quarter"), [
        (f"consumer (dedup + commit, {kind})", args.messages, took, round(args.messages / took),
         round(rows / took), ratio(args.messages / took, raw_rate), cpu / args.messages * 1000,
         f"{rows:,} / {distinct:,}", f"{counted:,} / {dups:,}", gaps, memory)
        for kind, took, cpu, rows, counted, gaps, memory in table
    ] + [("raw paho subscriber", raw_got, raw_took, round(raw_rate), "-", "1.00x", "-", "-",
          "-", "-", "-")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
