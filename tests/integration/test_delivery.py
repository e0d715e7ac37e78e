"""Delivery guarantees end to end, with every part real and faults injected for real.

Each test prints its counts per delivery class and asserts them:
- at-least-once and exactly-once: every line the device sent appears exactly
  once in `readings` (0 lost, 0 duplicates after dedup);
- at-most-once: no duplicates, and every loss is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
import pytest

from gateway.core.confirmation import Mark, encode_marks
from tests.support.rig import ClassCounts, Rig, assert_durable_exact
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def assert_at_most_once(c: ClassCounts, *, losses_counted_by_gateway: bool = True) -> None:
    """No duplicates; every loss counted (by the gateway, or as consumer gaps)."""
    assert c.duplicates_in_readings == 0, c.line()
    if losses_counted_by_gateway:
        assert c.lost == c.gateway_drops, c.line()
    else:
        assert c.lost <= c.gateway_drops + c.consumer_gaps, c.line()


def test_happy_path_every_class_delivered_once(rig_factory: type[Rig]) -> None:
    rig = rig_factory()
    rig.start_consumer()
    rig.start_gateway()
    rig.send(300)
    rig.wait_delivered()
    wait_for(lambda: len(rig.values("amo")) >= 300, timeout=10, what="at-most-once readings")
    table = rig.report("happy path")
    assert_durable_exact(table)
    assert table["amo"].lost == 0 and table["amo"].gateway_drops == 0, table["amo"].line()
    assert_at_most_once(table["amo"])
    assert rig.gateway.terminate() == 0
    assert "Traceback" not in rig.gateway.log_text()


def test_broker_killed_and_restarted_mid_stream(rig_factory: type[Rig]) -> None:
    """Broker SIGKILL x3 with persistence saved after every change, shipped defaults.

    mosquitto acknowledges before it saves, so a kill can lose readings it
    acknowledged since its last save. Under end-to-end confirmation (the
    default) the gateway keeps every durable row until the consumer confirmed
    it, so those are sent again: nothing is lost, nothing stored twice.
    """
    rig = rig_factory()
    rig.start_consumer()
    rig.start_gateway()
    for kill in range(1, 4):
        rig.send(150)
        rig.broker.kill()
        rig.send(100)  # read and stored while the broker is down
        rig.wait_stored()
        rig.restart_broker()
        # QoS 0 readings published before the consumer is back are dropped by
        # the broker; wait for both, so the next ones show the losses as gaps.
        rig.gateway.wait_log(r"connected to broker", timeout=40, count=kill + 1)
        rig.consumer.wait_log(r"connected to broker", timeout=40, count=kill + 1)
    rig.send(150)
    rig.wait_delivered_or_gaps(timeout=60)
    table = rig.report("broker SIGKILL x3")
    assert rig.broker.kills == 3
    assert_durable_exact(table)
    assert_at_most_once(table["amo"], losses_counted_by_gateway=False)


def test_gateway_killed_and_restarted_mid_stream(rig_factory: type[Rig]) -> None:
    rig = rig_factory()
    rig.start_consumer()
    rig.start_gateway()
    for _ in range(3):
        rig.send(200, per_second=1000)
        # The device pauses until what it sent is committed and the at-most-once
        # readings (memory only) are through; acks may still be in flight.
        rig.wait_stored()
        wait_for(lambda: len(rig.values("amo")) >= len(rig.sent), timeout=10,
                 what="at-most-once readings through before the kill")
        rig.gateway.kill()
        rig.start_gateway()
    rig.send(100)
    rig.wait_delivered()
    table = rig.report("gateway SIGKILL x3")
    assert rig.gateway.kills == 3
    assert_durable_exact(table)
    assert_at_most_once(table["amo"])
    epochs = rig._query(rig.consumer_db, "SELECT count(DISTINCT epoch) FROM readings")
    assert epochs[0][0] == 4, "each unclean restart starts a new epoch"


def test_consumer_killed_and_restarted_mid_stream(rig_factory: type[Rig]) -> None:
    rig = rig_factory()
    rig.start_consumer()
    rig.start_gateway()
    for _ in range(3):
        rig.send(200, per_second=1000)
        rig.consumer.kill()
        rig.send(100)  # queued by the broker for the consumer's session
        rig.start_consumer()
    rig.send(100)
    rig.wait_delivered()
    table = rig.report("consumer SIGKILL x3")
    assert rig.consumer.kills == 3
    assert_durable_exact(table)
    # The broker does not queue QoS 0 for an offline session (queue_qos0_messages
    # false: with it on, mosquitto 2.0.11 loses queued QoS 1 messages). Those
    # losses never reach the gateway, so they show up as the consumer's gaps.
    assert table["amo"].lost > 0, table["amo"].line()
    assert_at_most_once(table["amo"], losses_counted_by_gateway=False)


def test_link_stalled_and_cut_through_proxy(rig_factory: type[Rig]) -> None:
    rig = rig_factory(via_proxy=True)
    assert rig.proxy is not None
    rig.start_consumer()
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    for _ in range(2):
        rig.send(100)
        rig.proxy.stall()
        rig.send(100)
        rig.wait_stored()
        # keepalive 5s: paho gives up on the silent link and reconnects
        rig.gateway.wait_log(r"connection to .* lost", timeout=30)
        rig.proxy.resume()
        rig.send(100)
        rig.proxy.cut()
        rig.send(100)
    rig.wait_delivered(timeout=90)
    table = rig.report("link stalled x2, cut x2")
    assert_durable_exact(table)
    assert_at_most_once(table["amo"], losses_counted_by_gateway=False)


def test_at_most_once_overflow_while_offline_is_counted_exactly(rig_factory: type[Rig]) -> None:
    """The gateway cannot reach the broker (which, and the consumer, stay up):
    durable readings wait in the store, at-most-once ones in a bounded memory
    buffer whose overflow is dropped oldest first and counted, one by one."""
    rig = rig_factory(via_proxy=True, amo_buffer=50)
    assert rig.proxy is not None
    rig.start_consumer()
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    rig.send(100)
    wait_for(lambda: len(rig.values("amo")) >= 100, timeout=15, what="readings before the outage")
    rig.proxy.refuse()
    rig.gateway.wait_log(r"connection to .* lost|cannot reach", timeout=15)
    rig.send(200)
    rig.wait_stored()
    rig.proxy.allow()
    rig.wait_delivered(timeout=60)
    wait_for(lambda: len(rig.values("amo")) >= 150, timeout=15, what="the buffered 50")
    table = rig.report("broker unreachable, at-most-once buffer 50")
    assert_durable_exact(table)
    amo = table["amo"]
    assert amo.gateway_drops == 150, amo.line()
    assert amo.lost == amo.gateway_drops, amo.line()
    assert amo.duplicates_in_readings == 0, amo.line()
    kept = sorted(rig.values("amo"))[-50:]
    assert kept == list(range(251, 301)), "the newest readings are kept, the oldest dropped"


def test_broker_restart_without_persistence_holds_readings_until_the_consumer_is_back(
    rig_factory: type[Rig],
) -> None:
    """The opt-out, `confirmation: broker`: the broker restarts with no memory of
    the consumer's session. Until the consumer subscribes again mosquitto
    answers QoS 1 publishes with 0x10 (no matching subscribers): the gateway
    keeps those rows and sends them again instead of deleting readings nobody
    received. For QoS 2 mosquitto says nothing of the kind (PUBREC and PUBCOMP
    carry success), so exactly-once readings published in that window are
    lost, each one a consumer gap. The default, end-to-end confirmation, loses
    none (tests/integration/test_start_order.py)."""
    rig = rig_factory(broker_persistent=False, tap=False, gateway_extra="confirmation: broker\n")
    rig.restart_broker_while_consumer_away()
    wait_for(lambda: set(rig.values("alo")) >= set(rig.sent), timeout=60,
             what="every at-least-once reading, the held ones included")
    wait_for(lambda: set(rig.values("eo")) >= set(range(201, 301)), timeout=20,
             what="the exactly-once readings sent after the consumer came back")
    table = rig.report("broker restarted without persistence, consumer away meanwhile")
    alo, eo = table["alo"], table["eo"]
    assert alo.lost == 0 and alo.duplicates_in_readings == 0, alo.line()
    assert eo.duplicates_in_readings == 0, eo.line()
    # Those published before the consumer subscribed again are lost (how many of the 100
    # depends on when it subscribed); each loss is a gap, none goes unseen.
    assert 0 < eo.lost <= 100 and eo.lost == eo.consumer_gaps, eo.line()


def test_end_to_end_confirmation_closes_the_broker_crash_hole(rig_factory: type[Rig]) -> None:
    """Broker SIGKILL x3 with persistence OFF (the broker forgets everything):
    with `confirmation: end-to-end`, durable rows stay on the gateway after
    PUBACK/PUBCOMP until the consumer confirms it committed them, and are sent
    again when no confirmation comes, so none is lost."""
    rig = rig_factory(broker_persistent=False,
                      gateway_extra="confirmation: end-to-end\nconfirmation_timeout: 1s\n")
    rig.start_consumer()
    rig.start_gateway()
    for kill in range(1, 4):
        rig.send(150)
        rig.broker.kill()
        rig.send(100)
        rig.wait_stored()
        rig.restart_broker()
        rig.gateway.wait_log(r"connected to broker", timeout=40, count=kill + 1)
        rig.consumer.wait_log(r"subscribed to", timeout=40, count=kill + 1)
    rig.send(150)
    rig.wait_delivered(timeout=90)
    outbox = rig.workdir / "state" / "outbox.sqlite"
    wait_for(lambda: rig._query(outbox, "SELECT count(*) FROM outbox") == [(0,)], timeout=30,
             what="every durable row confirmed and deleted")
    table = rig.report("broker SIGKILL x3, no persistence, end-to-end confirmation")
    assert_durable_exact(table)
    assert table["eo"].produced == 900
    runtime = status_runtime(rig, lambda r: r["confirmations_accepted"] > 0)
    assert runtime["confirmation"] == "end-to-end"


def test_forged_confirmations_are_ignored_and_counted(rig_factory: type[Rig]) -> None:
    """Only marks for a stream the gateway knows and a seq it handed out delete rows."""
    rig = rig_factory(gateway_extra="confirmation: end-to-end\nconfirmation_timeout: 60s\n")
    rig.start_gateway()  # no consumer: nothing confirms but the test
    rig.gateway.wait_log(r"connected to broker")
    rig.send(20)
    rig.wait_stored()
    outbox = rig.workdir / "state" / "outbox.sqlite"

    def held() -> int:
        rows = rig._query(outbox, "SELECT count(*) FROM outbox WHERE stream = 'eo' "
                                  "AND acked_at IS NOT NULL")
        return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]

    wait_for(lambda: held() == 20, timeout=15, what="20 broker-acknowledged rows held")
    epoch = str(rig._query(outbox, "SELECT value FROM meta WHERE key = 'epoch'")[0][0])
    topic = f"gw/{rig.gateway_id}/_confirm"
    forged = [
        encode_marks(rig.gateway_id, [Mark("19700101T000000Z-deadbeef", "dev", "eo", 1, 5)]),
        encode_marks(rig.gateway_id, [Mark(epoch, "dev", "eo", 1, 10_000)]),
        encode_marks("someone-else", [Mark(epoch, "dev", "eo", 1, 20)]),
        b"not a confirmation",
        encode_marks(rig.gateway_id, [Mark(epoch, "dev", "eo", 1, 5)]),  # the one genuine mark
    ]
    publish_all(rig.broker.port, topic, forged)
    wait_for(lambda: held() == 15, timeout=15, what="rows 1..5 confirmed and deleted")
    runtime = status_runtime(rig, lambda r: sum(r["confirmations_ignored"].values()) >= 4)
    assert runtime["confirmations_ignored"] == {
        "confirm_unknown_stream": 1, "confirm_future_seq": 1,
        "confirm_other_gateway": 1, "confirm_undecodable": 1}, runtime
    assert runtime["confirmations_accepted"] == 1
    left = [int(str(seq)) for (seq,) in rig._query(
        outbox, "SELECT seq FROM outbox WHERE stream = 'eo' ORDER BY seq")]
    assert left == list(range(6, 21))


def publish_all(port: int, topic: str, payloads: list[bytes]) -> None:
    """Publish each payload at QoS 1 and wait for every PUBACK."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def status_runtime(rig: Rig, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The running gateway's snapshot in `status`, once `ready` holds (it is refreshed every 5 s)."""
    def snapshot() -> dict[str, Any] | None:
        runtime = rig.status().get("runtime")
        return runtime if isinstance(runtime, dict) and ready(runtime) else None
    found = wait_for(snapshot, timeout=20, interval=0.5, what="the runtime snapshot")
    assert found is not None
    return found
