"""The baseline: raw paho-mqtt 2.x, publisher -> mosquitto -> subscriber, nothing else.

No store, no dedup, no database: the most a Python client on this machine
gets through the same broker. Each role runs as a process of its own (as the
gateway and the consumer do) and prints its times as one JSON line:

    python -m bench.raw_paho sub PORT TOPIC QOS COUNT [--persistent ID]
    python -m bench.raw_paho pub PORT TOPIC QOS COUNT RATE [--window N]

The subscriber prints `subscribed`, then, after COUNT messages (or 60 s of
silence), {"count", "first", "last", "latencies"} (latency: arrival minus the
send time the publisher put in the payload). The publisher sends COUNT
envelope-sized payloads, as fast as paho takes them (RATE 0) or at RATE per
second, with an in-flight window of N, and prints
{"start", "end"} once every one is acknowledged.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MAX_QUEUED = 10_000
# mosquitto's Receive Maximum, and raw paho's best window here: 100 and 1000 are slower,
# as paho rescans its queue on every ack (bench/README.md).
WINDOW = 20
# The same size as the gateway's envelope for the bench streams (~190 bytes).
PAD = "x" * 120


def payload(n: int) -> bytes:
    """A payload carrying its index and send time."""
    return json.dumps({"n": n, "sent": time.time(), "pad": PAD}).encode()


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv5)


def subscribe(port: int, topic: str, qos: int, count: int, client_id: str | None) -> None:
    """Count arrivals; print the summary after `count` or 60 s of silence."""
    persistent = client_id is not None
    client = _client(client_id or "")
    state = {"count": 0, "first": 0.0, "last": 0.0, "heard": time.monotonic()}
    latencies: list[float] = []
    done = threading.Event()

    def on_connect(c: mqtt.Client, _u: object, _f: object, _rc: object, _p: object) -> None:
        c.subscribe(topic, qos=qos)

    def on_subscribe(_c: mqtt.Client, _u: object, _m: object, _rc: object, _p: object) -> None:
        print("subscribed", flush=True)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        if state["count"] == 0:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        state["heard"] = time.monotonic()
        latencies.append(now - json.loads(msg.payload)["sent"])
        if state["count"] >= count:
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 1000
    if persistent:
        props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, keepalive=30, clean_start=not persistent, properties=props)
    client.loop_start()
    while not done.wait(0.5):
        if time.monotonic() - state["heard"] > 60:
            break
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"count": state["count"], "first": state["first"], "last": state["last"],
                      "latencies": latencies}), flush=True)


def publish_all(port: int, count: int, message: Callable[[int], tuple[str, bytes]], qos: int,
                *, rate: float = 0.0, window: int = WINDOW) -> tuple[float, float, int]:
    """Publish `message(n)` (topic, payload) for n in range(count), as fast as paho takes
    them (`rate` 0) or at `rate` per second, with an in-flight window of `window`;
    wall-clock start and end, and how many were acknowledged (all, unless the broker
    stopped answering for 60 s, or 300 s at the end).

    paho's packet ids wrap at 65,535: more unacknowledged than that overwrite each other
    (docs/benchmarks.md, "Baselines"), so at most MAX_QUEUED wait at once.
    """
    client = _client("")
    client.max_inflight_messages_set(window)
    client.max_queued_messages_set(0)
    room = threading.Semaphore(MAX_QUEUED)
    acked = threading.Event()
    settled = 0

    def on_publish(_c: mqtt.Client, _u: object, _mid: int, _rc: object, _p: object) -> None:
        nonlocal settled
        settled += 1
        room.release()
        if settled >= count:
            acked.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    start = time.time()
    gap = 1.0 / rate if rate > 0 else 0.0
    due = time.monotonic()
    try:
        for n in range(count):
            if not room.acquire(timeout=60):
                break
            client.publish(*message(n), qos=qos)
            if gap:
                due += gap
                time.sleep(max(0.0, due - time.monotonic()))
        acked.wait(300)
        return start, time.time(), settled
    finally:
        client.disconnect()
        client.loop_stop()


def publish(port: int, topic: str, qos: int, count: int, rate: float, window: int) -> None:
    """Publish `count` payloads; print when the last is acknowledged."""
    start, end, settled = publish_all(port, count, lambda n: (topic, payload(n)), qos, rate=rate,
                                      window=window)
    print(json.dumps({"start": start, "end": end, "settled": settled}), flush=True)


def main() -> None:
    """Run one role."""
    parser = argparse.ArgumentParser(prog="python -m bench.raw_paho")
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("sub")
    s.add_argument("port", type=int)
    s.add_argument("topic")
    s.add_argument("qos", type=int)
    s.add_argument("count", type=int)
    s.add_argument("--persistent", metavar="ID")
    p = sub.add_parser("pub")
    p.add_argument("port", type=int)
    p.add_argument("topic")
    p.add_argument("qos", type=int)
    p.add_argument("count", type=int)
    p.add_argument("rate", type=float)
    p.add_argument("--window", type=int, default=WINDOW)
    args = parser.parse_args()
    if args.role == "sub":
        subscribe(args.port, args.topic, args.qos, args.count, args.persistent)
    else:
        publish(args.port, args.topic, args.qos, args.count, args.rate, args.window)


if __name__ == "__main__":
    main()
