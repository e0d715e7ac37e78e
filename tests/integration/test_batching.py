"""Batching (wire format v2) end to end: real mosquitto, gateway and consumer processes.

Counts are the proof: every durable reading once in `readings`, a gateway
SIGKILL mid-batch loses and duplicates nothing, a batch with one bad reading
stores the rest, readings with a max_age go alone, and batching carries a reading in at most 0.3x the bytes
of the same run without it (counted by a TCP proxy between gateway and broker).
"""

from __future__ import annotations

from pathlib import Path

import paho.mqtt.client as paho
import pytest

from gateway.core.batch_wire import batch_topic, encode_text
from gateway.core.envelope import Envelope
from tests.support.rig import Rig, assert_durable_exact
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

BATCHING = "batching:\n  max_readings: 100\n  max_delay: 2s\n  compression: zlib\n"
DURABLE_ONLY = {"alo": "at-least-once", "eo": "exactly-once"}


def test_batched_readings_arrive_exactly_once(rig_factory: type[Rig]) -> None:
    rig = rig_factory(gateway_extra=BATCHING)
    rig.start_consumer()
    rig.start_gateway()
    rig.send(500, per_second=1000)
    rig.wait_delivered()
    table = rig.report("batched, zlib")
    assert_durable_exact(table)
    assert table["amo"].duplicates_in_readings == 0, table["amo"].line()
    # 1000 durable readings in batches of up to 100: 10 messages or more, far fewer than 1000.
    # (`status` shows the running process's figures as it last wrote them.)
    def batches_sent() -> int:
        runtime = rig.status()["runtime"]
        return int(runtime["batches_sent"]) if isinstance(runtime, dict) else 0

    wait_for(lambda: batches_sent() >= 10, timeout=15, what="status showing the batches sent")
    assert batches_sent() < 200
    batches = rig.gateway.log_text()
    assert rig.gateway.terminate() == 0
    assert "Traceback" not in batches + rig.consumer.log_text()


def test_readings_with_a_max_age_go_alone_with_their_expiry(rig_factory: type[Rig]) -> None:
    streams = {"alo": "at-least-once", "eo": "exactly-once, max_age: 1h"}
    rig = rig_factory(streams=streams, gateway_extra=BATCHING)
    rig.start_consumer()
    rig.start_gateway()
    rig.send(200, per_second=1000)
    rig.wait_delivered()
    assert_durable_exact(rig.report("batched, one stream with max_age"))
    assert rig.tap is not None
    assert rig.tap.batched["eo"] == 0, "a reading with a max_age never goes in a batch"
    assert rig.tap.batched["alo"] >= 200, rig.tap.batched
    assert rig.gateway.terminate() == 0


def test_gateway_killed_mid_batch_loses_and_duplicates_nothing(rig_factory: type[Rig]) -> None:
    # A long max_delay keeps rows waiting in the batcher when the gateway is killed.
    rig = rig_factory(streams=DURABLE_ONLY,
                      gateway_extra="batching:\n  max_readings: 70\n  max_delay: 30s\n")
    rig.start_consumer()
    rig.start_gateway()
    for _ in range(3):
        rig.send(150, per_second=1000)  # 2 full batches per stream, 10 readings left waiting
        rig.wait_stored()
        wait_for(lambda: min(len(rig.values(s)) for s in DURABLE_ONLY) >= len(rig.sent) - 10,
                 timeout=30, what="the full batches delivered")
        assert min(len(rig.values(s)) for s in DURABLE_ONLY) < len(rig.sent), \
            "the last readings should still wait for their batch"
        rig.gateway.kill()
        rig.start_gateway()
    rig.gateway.terminate()  # a clean stop sends what waits
    rig.start_gateway()
    rig.wait_delivered()
    table = rig.report("gateway SIGKILL mid-batch x3")
    assert rig.gateway.kills == 3
    assert_durable_exact(table)


def test_one_bad_reading_in_a_batch_is_rejected_alone(rig_factory: type[Rig]) -> None:
    rig = rig_factory(streams=DURABLE_ONLY, tap=False)
    rig.start_consumer()
    good = [Envelope("gw-test", "e-batch", "dev", "alo", seq, 1.7e9 + seq, seq, None)
            for seq in range(1, 6)]
    text = encode_text(good).decode().replace('"seq":3,', '"seq":-3,')
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", rig.broker.port)
    client.loop_start()
    try:
        client.publish(batch_topic("gw/gw-test", "dev"), text.encode(), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    wait_for(lambda: len(rig.values("alo")) >= 4, timeout=15, what="the good readings stored")
    assert sorted(rig.values("alo")) == [1, 2, 4, 5]
    rejects = rig.consumer_query("SELECT reason, count FROM consumer_rejects")
    assert rejects == [("bad_field", 1)]


def _bytes_per_reading(workdir: Path, extra: str, lines: int) -> float:
    workdir.mkdir()
    rig = Rig(workdir, via_proxy=True, streams=DURABLE_ONLY, tap=False, gateway_extra=extra)
    try:
        return _measure(rig, lines)
    finally:
        rig.close()


def _measure(rig: Rig, lines: int) -> float:
    rig.start_consumer()
    rig.start_gateway()
    assert rig.proxy is not None
    start = rig.proxy.bytes_forwarded
    rig.send(lines, per_second=200)
    rig.wait_delivered()
    assert_durable_exact(rig.report(f"bytes per reading, {rig.workdir.name}"))
    wait_for(lambda: rig.store_query("SELECT count(*) FROM outbox") == [(0,)], timeout=30,
             what="every row confirmed")
    used = rig.proxy.bytes_forwarded - start
    return used / (lines * len(DURABLE_ONLY))


def test_batching_carries_a_reading_in_under_a_third_of_the_bytes(tmp_path: Path) -> None:
    lines = 400
    plain = _bytes_per_reading(tmp_path / "unbatched", "", lines)
    batched = _bytes_per_reading(tmp_path / "batched", BATCHING, lines)
    print(f"bytes per reading: unbatched {plain:.1f}, batched {batched:.1f}, "
          f"ratio {batched / plain:.3f}")
    assert batched <= 0.3 * plain, (plain, batched)
