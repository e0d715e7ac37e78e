"""Push random and mutated lines through the real serial reader path: pty -> driver -> sink.

    python -m bench.fuzz_serial --lines 1000000 --seed 1 [--format json|csv|kv|nmea]

A writer thread plays a device on a real pseudo-terminal, sending a seeded
mix of good lines, good lines with bytes flipped/inserted/deleted, and
random bytes; the real driver (`serial` with the chosen line format, or
`nmea`) reads the pty through pyserial-asyncio, frames and parses, and
hands records and rejects to a counting sink. A last sentinel line marks
the end. Prints lines written, records, rejects by reason, and the elapsed
time. Exit 0 when the driver ran to the end without dying; 1 if it died or
never delivered the sentinel; 2 for bad arguments. Not a test: nothing
about speed is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pty
import random
import select
import sys
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from devices import nmea
from devices.base import DriverRun, Record
from devices.nmea import checksum
from devices.serial import port as serial_port

SEEDS = {
    "json": [b'{"temp_c": 21.5, "alarm": false}', b'{"n": 1, "s": "x", "l": [1, 2], "o": {"a": null}}'],
    "csv": [b"21.5,40,gh-1", b'"a,b",2,true'],
    "kv": [b"rain_mm=0.2 wind_ms=3.1 site=gh-1", b"a=1,b=2.5,c=true"],
    "nmea": [
        b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76",
        b"$GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43",
        b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39",
    ],
}
END_FIELD = "fuzz_end"


class CountingSink:
    """Counts what the driver delivers; notes the sentinel record."""

    def __init__(self, is_end: Callable[[Mapping[str, object]], bool]) -> None:
        self.is_end = is_end
        self.records = 0
        self.rejects: Counter[str] = Counter()
        self.ended = asyncio.Event()

    def record(self, record: Record) -> None:
        if self.is_end(record.fields):
            self.ended.set()
            return
        self.records += 1

    def rejected(self, reason: str, detail: str) -> None:
        self.rejects[reason] += 1

    def device_state(self, up: bool, detail: str) -> None:
        print(f"device {'up' if up else 'down'}: {detail}", file=sys.stderr)


def make_line(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One line: a third good, a third mutated, a third random bytes (newline-free)."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.choice(seeds)
    if kind == 1:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data)) if data else 0
            action = rng.randrange(3)
            if action == 0 and data:
                data[at] = rng.randrange(256)
            elif action == 1:
                data.insert(at, rng.randrange(256))
            elif data:
                del data[at]
        return bytes(data).replace(b"\n", b" ")
    return rng.randbytes(rng.randint(0, 300)).replace(b"\n", b" ")


END_TEXT = "fuzz-end-of-run"
NMEA_END = "GPGGA,000000.000,0000.0000,N,00000.0000,E,9,99,9.9,9.9,M,0,M,,"
# The end marker of each format: a line its parser accepts and that no
# generated line can equal, and how to recognise the record it becomes.
SENTINELS: dict[str, tuple[bytes, Callable[[Mapping[str, object]], bool]]] = {
    "json": (json.dumps({END_FIELD: END_TEXT}).encode(), lambda f: f.get(END_FIELD) == END_TEXT),
    "csv": (f"{END_TEXT},{END_TEXT},{END_TEXT}".encode(),
            lambda f: list(f.values()) == [END_TEXT] * 3),
    "kv": (f"{END_FIELD}={END_TEXT}".encode(), lambda f: f.get(END_FIELD) == END_TEXT),
    # fix quality 9 with 99 satellites: no seed sentence has them
    "nmea": (f"${NMEA_END}*{checksum(NMEA_END):02X}".encode(),
             lambda f: f.get("fix_quality") == 9 and f.get("satellites") == 99),
}


def write_all(master: int, lines: int, seed: int, fmt: str, stop: threading.Event) -> int:
    """Write the lines in chunks, then the sentinel; return the bytes written.

    Writes without blocking (waiting in select), so `stop` ends the thread
    even when nobody reads the pty any more.
    """
    rng = random.Random(seed)
    seeds = SEEDS[fmt]
    written = 0
    batch: list[bytes] = []
    for index in range(lines + 1):
        if index < lines:
            batch.append(make_line(rng, seeds))
            if len(batch) < 256 and index < lines - 1:
                continue
            data = memoryview(b"\n".join(batch) + b"\n")
            batch = []
        else:
            data = memoryview(b"\n" + SENTINELS[fmt][0] + b"\n")
        while data:
            if stop.is_set():
                return written
            _, ready, _ = select.select([], [master], [], 0.2)
            if ready:
                try:
                    count = os.write(master, data)
                except BlockingIOError:
                    continue
                data = data[count:]
                written += count
    return written


def driver_for(fmt: str, path: str) -> DriverRun:
    if fmt == "nmea":
        return nmea.start("gps", nmea.NmeaOptions(port=path, baudrate=115200))
    options = serial_port.SerialOptions(port=path, baudrate=115200, format=fmt,
                                        columns=("a", "b", "c") if fmt == "csv" else ())
    return serial_port.start("fuzz", options)


async def run(lines: int, seed: int, fmt: str, timeout: float) -> int:
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    sink = CountingSink(SENTINELS[fmt][1])
    stop = threading.Event()
    task = asyncio.create_task(driver_for(fmt, os.ttyname(slave))(sink))
    started = time.monotonic()
    writer: asyncio.Task[int] | None = None
    try:
        await asyncio.sleep(0.5)  # the driver flushes the port's input when it opens it
        if task.done():
            print("error: the driver stopped before any input", file=sys.stderr)
            return 1
        writer = asyncio.create_task(asyncio.to_thread(write_all, master, lines, seed, fmt, stop))
        ended = asyncio.create_task(sink.ended.wait())
        done, _ = await asyncio.wait({ended, task}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        written = writer.result() if writer.done() else -1
        elapsed = time.monotonic() - started
        if task in done:
            print(f"error: the driver died: {task.exception()!r}", file=sys.stderr)
            return 1
        if ended not in done:
            print(f"error: no end marker after {timeout:.0f}s", file=sys.stderr)
            ended.cancel()
            return 1
    finally:
        stop.set()
        task.cancel()
        await asyncio.gather(task, *([writer] if writer is not None else []),
                             return_exceptions=True)
        os.close(master)
        os.close(slave)
    rejected = sum(sink.rejects.values())
    print(f"format {fmt}, seed {seed}: {lines} lines written ({written} bytes) through a pty")
    print(f"records   {sink.records}")
    print(f"rejects   {rejected}")
    for reason, count in sorted(sink.rejects.items()):
        print(f"  {reason:<20} {count}")
    print(f"elapsed   {elapsed:.1f} s ({lines / elapsed:,.0f} lines/s)")
    print("driver alive at the end: yes")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_serial", description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=("json", "csv", "kv", "nmea"), default="json")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if not 1 <= args.lines <= 100_000_000:
        parser.error("--lines must be from 1 to 100000000")
    try:
        return asyncio.run(run(args.lines, args.seed, args.format, args.timeout))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
