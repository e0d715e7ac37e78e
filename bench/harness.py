"""What every benchmark shares: the machine, a fresh broker, the real processes, /proc figures.

Benchmarks start everything for real: a fresh mosquitto on a free loopback
port (`tests/support/broker.py`), the gateway and the consumer as
`python -m gateway` processes, a pty sensor fed by its own process
(`bench/feeder.py`). Figures are read from /proc of the measured process
(RSS, CPU seconds, bytes written) and from the consumer's `readings`.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path

from tests.support.broker import Mosquitto, mosquitto_binary
from tests.support.procs import REPO, Service
from tests.support.waiting import wait_for

# The broker the baselines and the gateway share: Receive Maximum 1000 (mosquitto's
# default of 20 would cap the gateway's window, which honours it, and not paho's).
BROKER_EXTRA = "max_inflight_messages 1000\nmax_queued_messages 2000000\n"
GATEWAY_ID = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, str]:
    """The facts a figure depends on."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    version = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True,
                             check=False).stdout.splitlines()
    return {
        "cpu": f"{cpu} x{os.cpu_count()}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "paho-mqtt": metadata.version("paho-mqtt"),
        "mosquitto": version[0].replace("mosquitto version ", "") if version else "?",
        "sqlite": sqlite3.sqlite_version,
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def print_header(title: str, params: dict[str, object]) -> None:
    """The title, the machine and the parameters of a run."""
    print(f"# {title}")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()))
    print("parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    print(f"command: python -m {_module()} {' '.join(sys.argv[1:])}")
    print(flush=True)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (it reads in a terminal and pastes into bench/README.md)."""
    cells = [[str(c) for c in columns], *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(flush=True)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def ratio(value: float, baseline: float) -> str:
    """`value / baseline` as `0.83x`."""
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- /proc ----------------------------------------------------------------------
@dataclass(frozen=True)
class ProcSample:
    """What /proc says of one process at one instant."""

    rss_kib: int
    cpu_s: float
    write_bytes: int


def sample(pid: int) -> ProcSample:
    """RSS, user+system CPU seconds and bytes written to storage, of a live process."""
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    written = 0
    with open(f"/proc/{pid}/io", encoding="ascii") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                written = int(line.split()[1])
    return ProcSample(rss, cpu, written)


# -- the parts --------------------------------------------------------------------
@contextmanager
def workdir(keep: Path | None = None) -> Iterator[Path]:
    """A scratch directory for one run (kept when `keep` is given)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="mqtt-gateway-bench-") as tmp:
        yield Path(tmp)


@contextmanager
def broker(where: Path, extra: str = "") -> Iterator[Mosquitto]:
    """A fresh mosquitto (no persistence) for one run, stopped by pid at the end."""
    b = Mosquitto(where, persistent=False, extra=BROKER_EXTRA + extra)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class Feeder:
    """The sensor: a process writing JSON lines into a pty the gateway reads (bench/feeder.py)."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.feeder", str(link)], cwd=REPO, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"feeder did not start: {line!r}")

    def send(self, count: int, rate: float = 0.0, start: int = 1) -> dict[str, float]:
        """Write `count` lines (`rate` per second, 0 for as fast as the pty drains);
        returns the feeder's {"first": t, "last": t} wall-clock times."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{count} {rate} {start}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("feeder exited")
        result: dict[str, float] = json.loads(answer)
        return result

    def close(self) -> None:
        """Close the pty and end the feeder."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)


def gateway_config(where: Path, port: int, link: Path, streams: dict[str, str], *,
                   store: str = "", top: str = "", devices: str | None = None) -> Path:
    """A gateway config: one serial device on `link` with `streams` (name -> delivery,
    every stream on the field `n`), or the YAML `devices` list given.

    Without a `confirmation:` key in `top` it says `confirmation: broker`: these
    benchmarks measure the gateway-to-broker leg, whose subscribers do not confirm."""
    if "confirmation:" not in top:
        top = "confirmation: broker\n" + top
    stream_lines = "\n".join(f"      - {{name: {name}, field: n, delivery: {delivery}}}"
                             for name, delivery in streams.items())
    device_yaml = devices if devices is not None else f"""  - id: dev
    driver: serial
    port: {link}
    streams:
{stream_lines}
"""
    path = where / "gateway.yaml"
    path.write_text(f"""version: 1
gateway:
  id: {GATEWAY_ID}
  state_dir: {where / 'state'}
broker:
  url: mqtt://127.0.0.1:{port}
store:
{store or '  durability: normal'}
devices:
{device_yaml}{top}""")
    return path


def consumer_config(where: Path, port: int, db: Path | str, extra: str = "") -> Path:
    """A consumer config subscribed to the bench gateway's topics."""
    path = where / "consumer.yaml"
    path.write_text(f"""version: 1
broker:
  url: mqtt://127.0.0.1:{port}
  client_id: bench-consumer
  subscribe: gw/#
database: {db}
{extra}""")
    return path


def start(service: Service, ready: str, timeout: float = 30.0) -> Service:
    """Start a gateway or consumer process and wait for its ready line."""
    service.start()
    service.wait_log(ready, timeout=timeout)
    return service


def stop(service: Service) -> int:
    """SIGTERM and wait; the exit code (SIGKILL after 60 s)."""
    try:
        return service.terminate(60)
    except subprocess.TimeoutExpired:
        service.ensure_stopped()
        return -9


def service(command: str, config: Path, where: Path, name: str) -> Service:
    """A `python -m gateway` process logging at INFO (DEBUG costs time on the hot path)."""
    return Service(command, config, where, name, log_level="INFO")


# -- the consumer's output ---------------------------------------------------------
def count_rows(db: Path, stream: str | None = None) -> int:
    """Rows in `readings` (of one stream); 0 before the consumer created the table."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            if stream is None:
                return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])
            return int(conn.execute("SELECT count(*) FROM readings WHERE stream = ?",
                                    (stream,)).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def wait_rows(db: Path, count: int, timeout: float, stream: str | None = None,
              settle: float | None = None) -> int:
    """Wait until `readings` holds `count` rows; with `settle`, stop early once the
    count has not moved for `settle` seconds (at-most-once may lose some)."""
    last, since = -1, time.monotonic()

    def done() -> bool:
        nonlocal last, since
        n = count_rows(db, stream)
        if n != last:
            last, since = n, time.monotonic()
        return n >= count or (settle is not None and time.monotonic() - since > settle)

    wait_for(done, timeout=timeout, interval=0.2, what=f"{count} rows in {db}")
    return last


def row_times(db: Path, stream: str | None = None) -> list[tuple[float, float]]:
    """(ts, received_at) of every row, as epoch seconds."""
    query = "SELECT ts, received_at FROM readings" + (" WHERE stream = ?" if stream else "")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute(query, (stream,) if stream else ()).fetchall()
    return [(_epoch(ts), _epoch(rx)) for ts, rx in rows]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _module() -> str:
    """`bench.x` for the running `python -m bench.x`."""
    main = Path(sys.argv[0]).resolve()
    try:
        return ".".join(main.relative_to(REPO).with_suffix("").parts)
    except ValueError:
        return main.stem
