"""The baselines every figure is divided by, run on the same machine in the same run.

- `raw_paho`: raw paho-mqtt publisher -> mosquitto -> raw paho subscriber
  (`bench/raw_paho.py`), per QoS: what Python and the broker manage with no
  store and no database.
- `c_client`: `mosquitto_pub -l` -> mosquitto -> `mosquitto_sub -C N`: the
  ceiling of the broker and loopback. `mosquitto_pub -l` exits before its
  QoS 1/2 queue drains (docs/benchmarks.md, "Baselines"), so its stdin stays open until the
  subscriber has counted every message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from bench.raw_paho import PAD
from tests.support.procs import REPO

_ENV = dict(os.environ, PYTHONPATH=str(REPO))


@dataclass(frozen=True)
class Baseline:
    """Messages per second from the first publish to the last arrival, and latencies."""

    rate: float
    count: int
    latencies: list[float] = field(default_factory=list)


def raw_paho(port: int, qos: int, count: int, rate: float = 0.0, topic: str = "base/raw") -> Baseline:
    """Publish `count` messages with raw paho and count them at a raw paho subscriber."""
    sub = subprocess.Popen([sys.executable, "-m", "bench.raw_paho", "sub", str(port), topic,
                            str(qos), str(count)], cwd=REPO, env=_ENV, text=True,
                           stdout=subprocess.PIPE)
    assert sub.stdout is not None
    if sub.stdout.readline().strip() != "subscribed":
        raise RuntimeError("raw paho subscriber did not subscribe")
    pub = subprocess.run([sys.executable, "-m", "bench.raw_paho", "pub", str(port), topic,
                          str(qos), str(count), str(rate)], cwd=REPO, env=_ENV, text=True,
                         capture_output=True, check=True, timeout=600)
    got = json.loads(sub.stdout.readline())
    sub.wait(30)
    sent = json.loads(pub.stdout)
    elapsed = got["last"] - sent["start"]
    return Baseline(got["count"] / elapsed if elapsed > 0 else 0.0, got["count"],
                    got["latencies"])


def c_client(port: int, qos: int, count: int, topic: str = "base/c") -> Baseline | None:
    """The same through mosquitto's C clients; None when they are not installed."""
    pub_bin, sub_bin = shutil.which("mosquitto_pub"), shutil.which("mosquitto_sub")
    if pub_bin is None or sub_bin is None:
        return None
    # stdbuf: mosquitto_sub block-buffers its stdout into a pipe, hiding the SUBACK line.
    unbuffered = [stdbuf, "-oL"] if (stdbuf := shutil.which("stdbuf")) else []
    sub = subprocess.Popen([*unbuffered, sub_bin, "-p", str(port), "-h", "127.0.0.1", "-t", topic,
                            "-q", str(qos), "-C", str(count), "-W", "300", "-d"], text=True,
                           stdout=subprocess.PIPE)
    assert sub.stdout is not None
    for text in sub.stdout:
        if "SUBACK" in text:
            break
    arrived = {"count": 0}

    def drain() -> None:
        assert sub.stdout is not None
        for text in sub.stdout:
            if text.startswith("Client") and "received PUBLISH" in text:
                arrived["count"] += 1

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    pub = subprocess.Popen([pub_bin, "-p", str(port), "-h", "127.0.0.1", "-t", topic,
                            "-q", str(qos), "-l", "-M", "1000"], stdin=subprocess.PIPE)
    assert pub.stdin is not None
    line = ('{"n": 0, "sent": 0.0, "pad": "' + PAD + '"}\n').encode()
    start = time.time()
    pub.stdin.write(line * count)
    pub.stdin.flush()
    sub.wait(600)
    end = time.time()
    pub.stdin.close()
    pub.wait(30)
    reader.join(10)
    return Baseline(count / (end - start), arrived["count"] or count)
