"""A delaying TCP proxy for the shaped-link bench: latency, stalls and a byte count.

    python -m bench.delay_proxy LISTEN_HOST LISTEN_PORT TARGET_PORT ONE_WAY_S STATS_FILE
        [--stall-every S] [--stall-for S] [--seed N]

Run by bench/cellular.py inside the broker's network namespace; it forwards to
TARGET_PORT on LISTEN_HOST (where mosquitto listens there). Every chunk
read from one side is delivered to the other `ONE_WAY_S` seconds later (so a
round trip costs twice that), in order. Now and then (an exponential wait of
mean `--stall-every`) the link stalls for `--stall-for` seconds: nothing is
delivered, the connections stay open. The bytes forwarded (both directions)
and the stalls so far are written to STATS_FILE as JSON every 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from pathlib import Path


class Link:
    """The shared state of the proxy: the byte count and the stall."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.bytes = 0
        self.stalls = 0
        self.open = asyncio.Event()
        self.open.set()


async def _pump(link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await link.open.wait()
            writer.write(data)
            await writer.drain()
            link.bytes += len(data)
        writer.close()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            await queue.put((time.monotonic() + link.delay, data))
    except OSError:
        pass
    await queue.put((0.0, b""))
    with contextlib.suppress(OSError):
        await sender


async def _serve(args: argparse.Namespace) -> None:
    link = Link(args.one_way)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(args.host, args.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(link, reader, up_writer), _pump(link, up_reader, writer),
                             return_exceptions=True)

    server = await asyncio.start_server(accept, args.host, args.port)
    print("ready", flush=True)
    stats = Path(args.stats)
    rng = random.Random(args.seed)
    next_stall = time.monotonic() + rng.expovariate(1 / args.stall_every) \
        if args.stall_every > 0 else float("inf")
    async with server:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if now >= next_stall:
                link.stalls += 1
                link.open.clear()
                await asyncio.sleep(args.stall_for)
                link.open.set()
                next_stall = time.monotonic() + rng.expovariate(1 / args.stall_every)
            stats.write_text(json.dumps({"bytes": link.bytes, "stalls": link.stalls}))


def main() -> None:
    """Parse the arguments and proxy until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.delay_proxy", description=__doc__)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("target_port", type=int)
    parser.add_argument("one_way", type=float)
    parser.add_argument("stats")
    parser.add_argument("--stall-every", type=float, default=0.0)
    parser.add_argument("--stall-for", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
