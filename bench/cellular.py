"""A shaped, cellular-like link: batched and unbatched side by side.

    python -m bench.cellular [--quick] [--outage S] [--rate-kbit K] [--rtt-ms MS]

Needs root (it makes network namespaces). The gateway and the broker run in
two namespaces of their own, `mgwb-gw` and `mgwb-br`, joined by a veth pair
with the addresses 10.77.0.1/30 (gateway) and 10.77.0.2/30 (broker), made at
the start and removed at the end; no traffic leaves them. Both ends of the
veth are shaped with `tc ... tbf` (default 256 kbit/s), and the gateway
reaches mosquitto through a delaying proxy in the broker's namespace
(bench/delay_proxy.py: default 300 ms RTT and a stall of 3 s about once a
minute), which also counts the bytes. mosquitto and the consumer run in the
broker's namespace (`ip netns exec`), the gateway in the other.

Per mode (unbatched; `batching: {max_readings: 100, max_delay: 2s,
compression: zlib}`): the sensor sends 20 lines/s of 3 at-least-once streams
throughout; after a warm-up the veth goes down for the outage (10 minutes;
30 s with `--quick`) and comes up again. Reported: bytes per reading on the
link, the delivery lag p99 (reading taken -> committed by the consumer) of
the readings taken outside the outage, and the time from the link coming
back until every reading taken before it is in `readings` (the drain).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.harness import (
    Feeder,
    consumer_config,
    gateway_config,
    percentile,
    print_header,
    print_table,
    ratio,
    row_times,
    service,
    stop,
    workdir,
)
from tests.support.broker import Mosquitto, mosquitto_binary
from tests.support.procs import REPO
from tests.support.waiting import wait_for

GW_NS, BR_NS = "mgwb-gw", "mgwb-br"
GW_IF, BR_IF = "mgwb-g", "mgwb-b"
GW_ADDR, BR_ADDR = "10.77.0.1", "10.77.0.2"
PROXY_PORT = 18830
STREAMS = {"s1": "at-least-once", "s2": "at-least-once", "s3": "at-least-once"}
BATCHING = "batching:\n  max_readings: 100\n  max_delay: 2s\n  compression: zlib\n"
LINES_PER_S = 20.0
WARMUP_S = 20.0
AFTER_S = 20.0  # lines sent after the link is back, while the backlog drains


def _ip(*args: str, ns: str | None = None) -> None:
    """`ip ARGS`, in namespace `ns` when given."""
    _run(["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args])


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


def _remove_namespaces() -> None:
    for ns in (GW_NS, BR_NS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


@contextmanager
def shaped_link(rate_kbit: int) -> Iterator[None]:
    """Two namespaces and a veth pair between them, both ends shaped by tbf."""
    _remove_namespaces()  # what a killed earlier run left
    try:
        _ip("netns", "add", GW_NS)
        _ip("netns", "add", BR_NS)
        _ip("link", "add", GW_IF, "netns", GW_NS, "type", "veth", "peer", "name", BR_IF,
            "netns", BR_NS)
        for ns, dev, addr in ((GW_NS, GW_IF, GW_ADDR), (BR_NS, BR_IF, BR_ADDR)):
            _ip("addr", "add", f"{addr}/30", "dev", dev, ns=ns)
            _ip("link", "set", dev, "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
            _run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
                  "rate", f"{rate_kbit}kbit", "burst", "4kb", "latency", "500ms"])
        yield
    finally:
        _remove_namespaces()


def link_down(down: bool) -> None:
    """Take the gateway's end of the veth down (an outage) or up again."""
    _ip("link", "set", GW_IF, "down" if down else "up", ns=GW_NS)


class Broker:
    """mosquitto and the delaying proxy, in the broker's namespace."""

    def __init__(self, where: Path, one_way: float, stall_every: float, stall_for: float) -> None:
        self.mosquitto = Mosquitto(where / "broker", extra="")
        conf = self.mosquitto.conf_path
        conf.write_text(conf.read_text().replace("127.0.0.1\n", f"{BR_ADDR}\n", 1))
        self.stats = where / "link.json"
        self.procs: list[subprocess.Popen[str]] = [
            subprocess.Popen(["ip", "netns", "exec", BR_NS, mosquitto_binary(), "-c", str(conf)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)]
        wait_for(lambda: "listen socket on port" in self._log(), timeout=15,
                 what="mosquitto listening in the broker's namespace")
        proxy = subprocess.Popen(
            ["ip", "netns", "exec", BR_NS, sys.executable, "-m", "bench.delay_proxy", BR_ADDR,
             str(PROXY_PORT), str(self.mosquitto.port), str(one_way), str(self.stats),
             "--stall-every", str(stall_every), "--stall-for", str(stall_for)],
            cwd=REPO, stdout=subprocess.PIPE, text=True)
        self.procs.append(proxy)
        assert proxy.stdout is not None
        if proxy.stdout.readline().strip() != "ready":
            raise RuntimeError("the delaying proxy did not start")

    def _log(self) -> str:
        path = self.mosquitto.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def link_stats(self) -> dict[str, int]:
        """Bytes the proxy forwarded and stalls so far."""
        try:
            stats: dict[str, int] = json.loads(self.stats.read_text())
        except (OSError, ValueError):
            return {"bytes": 0, "stalls": 0}
        return stats

    def close(self) -> None:
        """Stop the proxy and mosquitto."""
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _count_before(db: Path, last_line: int) -> int:
    import sqlite3  # noqa: PLC0415

    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            row = conn.execute("SELECT count(*) FROM readings WHERE CAST(value AS INTEGER) <= ?",
                               (last_line,)).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(row[0])


def one_mode(where: Path, top: str, args: argparse.Namespace) -> tuple[float, float, float, int]:
    """Bytes per reading, lag p99 (s) outside the outage, drain (s), stalls."""
    with ExitStack() as stack:
        br = Broker(where, args.rtt_ms / 2000, args.stall_every, 3.0)
        stack.callback(br.close)
        db = where / "consumer.sqlite"
        consumer = service("consume", consumer_config(where, br.mosquitto.port, db), where,
                           "consumer")
        config = consumer.config
        config.write_text(config.read_text().replace("127.0.0.1", BR_ADDR))
        consumer.launcher = ["ip", "netns", "exec", BR_NS]
        consumer.start()
        consumer.wait_log(r"subscribed to", timeout=30)
        stack.callback(stop, consumer)
        feeder = Feeder(where / "ttyBENCH")
        stack.callback(feeder.close)
        gw_config = gateway_config(where, PROXY_PORT, feeder.link, STREAMS,
                                   top="confirmation: end-to-end\n" + top)
        gw_config.write_text(gw_config.read_text().replace("127.0.0.1", BR_ADDR))
        gateway = service("run", gw_config, where, "gateway")
        gateway.launcher = ["ip", "netns", "exec", GW_NS]
        gateway.start()
        gateway.wait_log(r"connected to broker", timeout=60)
        stack.callback(stop, gateway)
        return _drive(br, feeder, db, args)


def _drive(br: Broker, feeder: Feeder, db: Path, args: argparse.Namespace
           ) -> tuple[float, float, float, int]:
    total_s = WARMUP_S + args.outage + AFTER_S
    lines = int(LINES_PER_S * total_s)
    before = br.link_stats()["bytes"]
    started = time.time()
    feeding = threading.Thread(target=feeder.send, args=(lines, LINES_PER_S))
    feeding.start()
    time.sleep(max(0.0, started + WARMUP_S - time.time()))
    link_down(True)
    down_at = time.time()
    time.sleep(max(0.0, down_at + args.outage - time.time()))
    link_down(False)
    up_at = time.time()
    last_before_up = int((up_at - started) * LINES_PER_S)
    wanted = last_before_up * len(STREAMS)
    wait_for(lambda: _count_before(db, last_before_up) >= wanted, timeout=args.outage * 3 + 300,
             interval=0.5, what="the backlog drained")
    drain = time.time() - up_at
    feeding.join()
    wait_for(lambda: _count_before(db, lines) >= lines * len(STREAMS), timeout=300,
             interval=0.5, what="every reading delivered")
    stats = br.link_stats()
    lags = [rx - ts for ts, rx in row_times(db) if not down_at - 5 <= ts <= up_at]
    return ((stats["bytes"] - before) / (lines * len(STREAMS)), percentile(lags, 99), drain,
            stats["stalls"])


def main(argv: list[str] | None = None) -> int:
    """Run both modes on a fresh shaped link each; print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench.cellular", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 30 s outage")
    parser.add_argument("--outage", type=float, default=600.0, help="seconds the link is down")
    parser.add_argument("--rate-kbit", type=int, default=256)
    parser.add_argument("--rtt-ms", type=float, default=300.0)
    parser.add_argument("--stall-every", type=float, default=60.0,
                        help="mean seconds between stalls of 3 s (0: none)")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args(argv)
    # A SIGTERM (a `timeout`) unwinds too, so the namespaces and processes are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.outage = 30.0
    if not 5 <= args.outage <= 3600 or not 16 <= args.rate_kbit <= 100_000 \
            or not 0 <= args.rtt_ms <= 5000:
        parser.error("--outage 5 to 3600 s; --rate-kbit 16 to 100000; --rtt-ms 0 to 5000")
    print_header("Shaped link: gateway and broker in two namespaces over a tbf-shaped veth",
                 {"link": f"{args.rate_kbit} kbit/s tbf, {args.rtt_ms:g} ms RTT, a 3 s stall "
                          f"every ~{args.stall_every:g} s",
                  "sensor": f"{LINES_PER_S:g} lines/s x {len(STREAMS)} at-least-once streams",
                  "outage": f"{args.outage:g} s after {WARMUP_S:g} s",
                  "batching": "max_readings 100, max_delay 2s, zlib"})
    results = {}
    for name, top in (("unbatched", ""), ("batched", BATCHING)):
        keep = args.workdir / name if args.workdir else None
        with workdir(keep) as where, shaped_link(args.rate_kbit):
            results[name] = one_mode(where, top, args)
    plain = results["unbatched"]
    print_table(("mode", "bytes/reading", "vs unbatched", "lag p99", "drain after outage",
                 "drain vs unbatched", "stalls"),
                [(name, f"{b:.1f}", ratio(b, plain[0]), f"{lag:.2f} s", f"{drain:.1f} s",
                  ratio(drain, plain[2]), stalls)
                 for name, (b, lag, drain, stalls) in results.items()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
