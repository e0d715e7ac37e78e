"""The flash-wear baseline: the smallest possible SQLite WAL outbox, nothing else.

    python -m bench.sqlite_outbox DIR --rows R --interval S --commits K --payload-bytes L
                                  --synchronous NORMAL|FULL

Every S seconds one transaction inserts R rows of L bytes and deletes the R
rows of the transaction before (a table `outbox(id INTEGER PRIMARY KEY,
payload BLOB)`, WAL mode, SQLite's default checkpoints). Prints the bytes
this process caused to be written to storage (/proc/self/io write_bytes) per
row, as JSON.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path


def write_bytes() -> int:
    """Bytes this process has caused to be written to storage so far."""
    with open("/proc/self/io", encoding="ascii") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    """Run the paced insert/delete loop."""
    parser = argparse.ArgumentParser(prog="python -m bench.sqlite_outbox")
    parser.add_argument("dir", type=Path)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--commits", type=int, required=True)
    parser.add_argument("--payload-bytes", type=int, required=True)
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(args.dir / "baseline.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={args.synchronous}")
    conn.execute("CREATE TABLE outbox(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    payload = b"x" * args.payload_bytes
    before = write_bytes()
    due = time.monotonic()
    last: list[int] = []
    for _ in range(args.commits):
        conn.execute("BEGIN IMMEDIATE")
        ids = [conn.execute("INSERT INTO outbox(payload) VALUES (?)", (payload,)).lastrowid or 0
               for _ in range(args.rows)]
        conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in last])
        conn.execute("COMMIT")
        last = ids
        due += args.interval
        time.sleep(max(0.0, due - time.monotonic()))
    conn.close()
    rows = args.rows * args.commits
    print(json.dumps({"rows": rows, "bytes_per_row": (write_bytes() - before) / rows}))


if __name__ == "__main__":
    main()
