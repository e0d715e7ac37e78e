"""The benchmarks' sensor: JSON lines into a real pty, in a process of its own.

Run by `bench.harness.Feeder`: makes a pty, points the symlink given as the
only argument at its device end and prints `ready`. Each line on stdin,
`COUNT RATE START`, writes COUNT lines `{"n": k}` (k from START) at RATE
lines per second (0: as fast as the gateway drains the pty) and answers
with the wall-clock times of the first and last write as JSON. The pty stays
open until stdin closes, so nothing written is discarded.
"""

from __future__ import annotations

import json
import os
import pty
import sys
import time
import tty
from pathlib import Path

CHUNK = 64  # lines per write when unpaced


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def feed(fd: int, count: int, rate: float, start: int) -> dict[str, float]:
    """Write the lines; the times of the first and last write."""
    first = time.time()
    if rate <= 0:
        for base in range(start, start + count, CHUNK):
            end = min(base + CHUNK, start + count)
            _write_all(fd, b"".join(b'{"n": %d}\n' % n for n in range(base, end)))
    else:
        gap = 1.0 / rate
        due = time.monotonic()
        for n in range(start, start + count):
            _write_all(fd, b'{"n": %d}\n' % n)
            due += gap
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    return {"first": first, "last": time.time()}


def main() -> None:
    """Serve `COUNT RATE START` requests until stdin closes."""
    link = Path(sys.argv[1])
    master, slave = pty.openpty()
    tty.setraw(slave)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(os.ttyname(slave))
    print("ready", flush=True)
    for request in sys.stdin:
        count, rate, start = request.split()
        print(json.dumps(feed(master, int(count), float(rate), int(start))), flush=True)
    os.close(master)
    os.close(slave)


if __name__ == "__main__":
    main()
