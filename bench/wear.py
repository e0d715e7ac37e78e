"""Figure 3: flash wear, bytes the gateway writes to storage per durable reading.

    python -m bench.wear [--rates 10,100,1000] [--seconds 20] [--durability normal,full]
                         [--commit-interval 0.2] [--page-size BYTES]

A pty sensor sends one at-least-once stream at each RATE readings/s for SECONDS;
the figure is the gateway process's /proc/<pid>/io write_bytes over the run
(until every reading is acknowledged and deleted from the store), per
reading, and that divided by the envelope's size. Run for `durability:
normal` and `full`. Side by side, at the same time: the smallest possible
SQLite WAL outbox (`bench/sqlite_outbox.py`) inserting and deleting rows of
the envelope's size on the same group-commit cadence. Target: 2.5x the
envelope or less. `--page-size` makes the store file with that SQLite page
size before the gateway first opens it (the gateway keeps an existing
file's page size; it makes new ones with 1 KiB pages).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from bench.harness import (
    print_header,
    print_table,
    ratio,
    sample,
    wait_rows,
    workdir,
)
from bench.pipeline import pipeline
from gateway.core.envelope import Envelope, encode
from gateway.core.identity import new_epoch
from tests.support.procs import REPO
from tests.support.waiting import wait_for

COMMIT_INTERVAL = 0.2  # the shipped default


def make_store_file(path: Path, page_size: int) -> None:
    """An empty SQLite file with `page_size`, for the gateway to make its store in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.execute("VACUUM")


def envelope_size(count: int) -> int:
    """The size of a bench reading's envelope, at a typical seq and value."""
    return len(encode(Envelope("bench", new_epoch(1.8e9, "0123abcd"), "dev", "s", count // 2,
                               1.8e9, count // 2, None)))


def outbox_rows(store: Path) -> int:
    """Rows in the gateway's outbox, read as `status` does."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench.wear", description=__doc__)
    parser.add_argument("--rates", default="10,100,1000", help="readings per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--durability", default="normal,full")
    parser.add_argument("--commit-interval", type=float, default=COMMIT_INTERVAL)
    parser.add_argument("--page-size", type=int, default=0,
                        help="make the store with this page size (default: the gateway's)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    durabilities = args.durability.split(",")
    interval = args.commit_interval
    try:
        rates = [float(r) for r in args.rates.split(",")]
    except ValueError:
        rates = []
    if not rates or not all(1 <= r <= 5000 for r in rates) or not 5 <= args.seconds <= 3600 \
            or not set(durabilities) <= {"normal", "full"} or not 0.001 <= interval <= 60 \
            or args.page_size not in (0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536):
        parser.error("--rates: numbers from 1 to 5000; --seconds from 5 to 3600; --durability: "
                     "normal and/or full; --commit-interval from 0.001 to 60; --page-size: a "
                     "power of two from 512 to 65536")
    print_header("Flash wear: bytes written to storage per durable reading",
                 {"rates": args.rates, "seconds per run": args.seconds,
                  "commit_interval": f"{interval:g}s", "store page size":
                  args.page_size or "the gateway's (1 KiB)"})
    rows = []
    for durability, rate in ((d, r) for d in durabilities for r in rates):
        count = int(rate * args.seconds)
        size = envelope_size(count)
        name = f"{durability}-{rate:g}"
        with workdir(args.workdir / name if args.workdir else None) as where:
            if args.page_size:
                make_store_file(where / "state" / "outbox.sqlite", args.page_size)
            store = f"  durability: {durability}\n  commit_interval: {interval}s"
            with pipeline(where, {"s": "at-least-once"}, store=store) as run:
                per_commit = max(1, round(rate * interval))
                baseline = subprocess.Popen(
                    [sys.executable, "-m", "bench.sqlite_outbox", str(where / "baseline"),
                     "--rows", str(per_commit), "--interval", str(interval),
                     "--commits", str(max(1, round(count / per_commit))), "--payload-bytes",
                     str(size), "--synchronous", durability.upper()],
                    cwd=REPO, stdout=subprocess.PIPE, text=True)
                before = sample(run.gateway_pid).write_bytes
                feeding = threading.Thread(target=run.feeder.send, args=(count, rate))
                feeding.start()
                feeding.join()
                wait_rows(run.db, count, timeout=120)
                wait_for(lambda: outbox_rows(where / "state" / "outbox.sqlite") == 0,
                         timeout=30, interval=0.1, what="every reading deleted from the outbox")
                written = sample(run.gateway_pid).write_bytes - before
                out, _ = baseline.communicate(timeout=3600)
                base = json.loads(out)["bytes_per_row"]
        per_reading = written / count
        rows.append((durability, f"{rate:g}/s", count, f"{size} B", f"{per_reading:,.0f} B",
                     f"{per_reading / size:.2f}x",
                     f"{base:,.0f} B", f"{base / size:.2f}x", ratio(per_reading, base)))
    print_table(("durability", "rate", "readings", "envelope", "gateway per reading", "vs envelope",
                 "bare SQLite outbox per row", "vs envelope", "gateway vs bare SQLite"), rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
