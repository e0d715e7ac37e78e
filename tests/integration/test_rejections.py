"""What the broker refuses and what the consumer cannot read, end to end.

A rejected message must never block the stream behind it and must never
disappear silently (docs/guarantees.md, "Rejected messages"): the gateway
quarantines what the broker refuses or could never accept, the consumer
counts what it cannot read, and every other reading is delivered exactly
once. Every part is real: mosquitto with an ACL file or a maximum packet
size, the gateway and the consumer as processes, a pty as the serial port.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.rig import DURABLE, ClassCounts, Rig
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

GATEWAY = "gw-test"


def quarantined(rig: Rig, stream: str) -> list[tuple[int, str]]:
    """(seq, reason) of the rows of a stream in the gateway's quarantine table."""
    rows = rig.store_query("SELECT seq, reason FROM quarantine WHERE stream = ? ORDER BY seq",
                           (stream,))
    return [(int(str(seq)), str(reason)) for seq, reason in rows]


def backlog(status: dict[str, object], delivery: str) -> int:
    """Pending readings of one delivery class in a `status --json` report."""
    classes = status["backlog"]
    assert isinstance(classes, dict)
    return int(classes[delivery]["pending"])


def assert_exact(c: ClassCounts) -> None:
    """Every reading sent arrived, once."""
    assert c.lost == 0, c.line()
    assert c.duplicates_in_readings == 0, c.line()
    assert c.delivered == c.produced, c.line()


def acl_rig(rig_factory: type[Rig], tmp_path: Path, streams: dict[str, str]) -> Rig:
    """A rig whose broker lets anonymous clients write only .../dev/alo, .../dev/eo and the
    consumer's confirmations (.../_confirm)."""
    acl = tmp_path / "broker.acl"
    # No `user` line: with allow_anonymous true these apply to anonymous clients,
    # which the gateway, the consumer and the wire tap all are.
    acl.write_text(f"topic read gw/#\n"
                   f"topic write gw/{GATEWAY}/dev/alo\n"
                   f"topic write gw/{GATEWAY}/dev/eo\n"
                   f"topic write gw/{GATEWAY}/_confirm\n")
    return rig_factory(gateway_id=GATEWAY, broker_extra=f"acl_file {acl}\n", streams=streams)


def test_broker_acl_rejects_one_stream_which_is_quarantined(
        rig_factory: type[Rig], tmp_path: Path) -> None:
    rig = acl_rig(rig_factory, tmp_path, {"alo": "at-least-once", "eo": "exactly-once",
                                           "denied": "at-least-once"})
    rig.start_consumer()
    rig.start_gateway()
    produced = 150
    rig.send(produced)
    rig.wait_delivered()
    wait_for(lambda: len(quarantined(rig, "denied")) >= produced, timeout=15,
             what=f"{produced} denied readings quarantined")
    # Delivered rows leave the store once the consumer's confirmation arrives.
    wait_for(lambda: backlog(rig.status(), "at-least-once") == backlog(rig.status(),
                                                                      "exactly-once") == 0,
             timeout=15, what="durable backlog confirmed away")
    status = rig.status()
    table = rig.report("broker ACL denies stream 'denied'")
    denied = quarantined(rig, "denied")
    reasons = {reason for _, reason in denied}
    print(f"  denied: produced {produced}  quarantined {len(denied)}  reasons {reasons}  "
          f"status quarantined {status['quarantined']}")

    for stream in DURABLE:
        assert_exact(table[stream])
        assert table[stream].stored_by_gateway == produced, table[stream].line()
        assert quarantined(rig, stream) == []
    assert [seq for seq, _ in denied] == list(range(1, produced + 1))
    assert all("not authori" in reason.lower() for reason in reasons), reasons
    assert table["denied"].stored_by_gateway == produced
    assert table["denied"].rows == 0, "a denied reading reached the consumer"
    assert status["quarantined"] == produced
    [(reason, count)] = status["quarantined_by_reason"].items()
    assert count == produced and "not authori" in reason.lower(), reason
    assert backlog(status, "at-least-once") == 0 and backlog(status, "exactly-once") == 0
    log = rig.gateway.log_text()
    warned = [line for line in log.splitlines() if re.search(r"\bWARNING\b", line)
              and "denied" in line and "quarantined" in line and "not authori" in line.lower()]
    print(f"  warning lines about the quarantine: {len(warned)}")
    assert warned, "no clear log line about the rejected stream"
    assert "Traceback" not in log


def test_broker_acl_rejects_an_exactly_once_stream_which_is_quarantined(
        rig_factory: type[Rig], tmp_path: Path) -> None:
    """As above for QoS 2, where the refusal comes in PUBREC, not PUBCOMP.

    mosquitto answers a denied QoS 2 PUBLISH with PUBREC 0x87 (Not authorized)
    and drops the message; MQTT 5 says the flow ends there. A gateway that
    sends PUBREL anyway gets a PUBCOMP for a message the broker never took.
    """
    rig = acl_rig(rig_factory, tmp_path, {"alo": "at-least-once", "eo": "exactly-once",
                                           "deniedeo": "exactly-once"})
    rig.start_consumer()
    rig.start_gateway()
    produced = 50
    rig.send(produced)
    rig.wait_delivered()
    wait_for(lambda: rig.gateway_stored("deniedeo") >= produced, timeout=10,
             what="denied exactly-once readings stored")
    # The outbox of the denied stream settles: every row either acknowledged
    # (deleted) or quarantined.
    wait_for(lambda: rig.store_query(
        "SELECT count(*) FROM outbox WHERE stream = 'deniedeo'") == [(0,)],
        timeout=15, what="the denied stream's outbox rows settled")
    denied = quarantined(rig, "deniedeo")
    table = rig.report("broker ACL denies exactly-once stream 'deniedeo'")
    print(f"  deniedeo: produced {produced}  quarantined {len(denied)}  "
          f"delivered {table['deniedeo'].rows}  "
          f"silently gone {produced - len(denied) - table['deniedeo'].rows}")
    for stream in DURABLE:
        assert_exact(table[stream])
    assert table["deniedeo"].rows == 0
    assert len(denied) == produced, (
        f"{produced - len(denied)} of {produced} readings the broker refused (PUBREC 0x87) "
        "left the outbox as delivered, without quarantine or count")


@pytest.mark.parametrize("confirmation", ["broker", "end-to-end"])
def test_message_over_the_broker_maximum_packet_size_is_quarantined(
        rig_factory: type[Rig], confirmation: str) -> None:
    """With end-to-end confirmation too: the quarantined seq never reaches the
    consumer, and the rows after it are still confirmed and leave the store."""
    max_packet = 2048
    rig = rig_factory(gateway_id=GATEWAY, broker_extra=f"max_packet_size {max_packet}\n",
                      gateway_extra=f"confirmation: {confirmation}\n")
    rig.start_consumer()
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    rig.send(30)
    big = "x" * (max_packet + 500)  # fits the line (max_line_bytes 4096), not a packet
    rig.device.write_raw(json.dumps({"n": big}).encode() + b"\n")
    rig.send(30)
    rig.wait_delivered(timeout=20)  # later small readings are not stalled behind it
    wait_for(lambda: len(rig.values("amo")) >= len(rig.sent), timeout=10,
             what="at-most-once readings")
    status = rig.status()
    table = rig.report(f"one reading over the broker's maximum packet size ({max_packet})")
    print(f"  quarantined {status['quarantined']}, drops {status['drops']}")
    for stream in DURABLE:
        c = table[stream]
        assert_exact(c)
        assert c.stored_by_gateway == len(rig.sent) + 1, c.line()  # the big one has seq 31
        rows = quarantined(rig, stream)
        assert [seq for seq, _ in rows] == [31], rows
        assert rows[0][1].startswith("too_large"), rows
        assert c.consumer_gaps == 1, c.line()  # seq 31 never sent: visible as a gap
    assert status["quarantined"] == len(DURABLE)
    assert status["drops"] == {"too_large": 1}, status["drops"]  # the at-most-once one
    assert_exact(table["amo"])
    on_wire = sorted({key[4] for key in rig.tap.copies})
    assert on_wire == [n for n in range(1, 62) if n != 31], "seq 31 went on the wire"
    assert "Traceback" not in rig.gateway.log_text()
    outbox = rig.workdir / "state" / "outbox.sqlite"
    wait_for(lambda: rig.store_query("SELECT count(*) FROM outbox") == [(0,)], timeout=15,
             what=f"every stored row acknowledged{' and confirmed' if confirmation != 'broker' else ''}")
    assert outbox.exists()


def test_packet_over_the_maximum_only_with_its_topic_is_not_sent(rig_factory: type[Rig]) -> None:
    """The limit is on the whole packet: topic, header and payload.

    A long topic prefix (each level up to 64 characters is valid) with a
    payload under `Maximum Packet Size - 64` still makes a packet over it;
    mosquitto then drops the connection, and a gateway that resends it after
    each reconnect stalls the stream for good.
    """
    max_packet = 2048
    levels = "/".join(ch * 64 for ch in "abc")
    rig = rig_factory(gateway_id=GATEWAY, broker_extra=f"max_packet_size {max_packet}\n",
                      topic_prefix=f"gw/{{gateway}}/{levels}")
    topic_bytes = len(f"gw/{GATEWAY}/{levels}/dev/alo")
    rig.start_consumer()
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker")
    rig.send(20)
    # payload ~1900 bytes: under 2048 - 64, but over 2048 with a ~210-byte topic
    value = "y" * 1755
    rig.device.write_raw(json.dumps({"n": value}).encode() + b"\n")
    rig.send(20)
    payload = rig.store_query(
        "SELECT length(payload) FROM outbox WHERE stream = 'alo' AND seq = 21")
    print(f"\n  topic {topic_bytes} bytes, payload of seq 21: {payload}")
    try:
        rig.wait_delivered(timeout=10)
    finally:
        table = rig.report(f"payload under the limit, packet over it ({max_packet}) "
                           "with its topic")
        reconnects = len(re.findall(r"connected to broker", rig.gateway.log_text()))
        print(f"  gateway connects {reconnects}, quarantined alo {quarantined(rig, 'alo')}, "
              f"eo {quarantined(rig, 'eo')}")
    for stream in DURABLE:
        assert_exact(table[stream])
    assert "Traceback" not in rig.gateway.log_text()


def test_consumer_counts_and_skips_garbage_on_its_topic(rig_factory: type[Rig]) -> None:
    rig = rig_factory(gateway_id=GATEWAY)
    rig.start_consumer()
    rig.start_gateway()
    topic = f"gw/{GATEWAY}/dev/alo"
    # A stream of its own, so the wire tap does not count these as copies of real readings.
    good = {"v": 1, "gateway": GATEWAY, "epoch": "bogus-epoch", "device": "dev",
            "stream": "junk", "seq": 1, "ts": "2026-11-26T21:00:00.123Z", "value": 1}
    garbage = {
        "bad_json": b"this is not JSON {",
        "unknown_version": json.dumps({**good, "v": 3}).encode(),  # v=2 is a batch's version
        "bad_field": json.dumps({k: v for k, v in good.items() if k != "seq"}).encode(),
    }
    rounds = 5
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="garbage-publisher",
                            protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", rig.broker.port)
    publisher.loop_start()
    try:
        for _ in range(rounds):
            for payload in garbage.values():
                rig.send(20, per_second=1000)
                publisher.publish(topic, payload, qos=1).wait_for_publish(5)
        rig.send(20)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    rig.wait_delivered()
    wait_for(lambda: len(rig.values("amo")) >= len(rig.sent), timeout=10,
             what="at-most-once readings")
    expected = {reason: rounds for reason in garbage}

    def rejects() -> dict[str, int]:
        rows = rig.consumer_query("SELECT reason, count FROM consumer_rejects")
        return {str(reason): int(str(count)) for reason, count in rows}

    wait_for(lambda: rejects() == expected, timeout=10, what=f"consumer_rejects == {expected}")
    table = rig.report(f"{rounds} of each of {sorted(garbage)} published between gateway traffic")
    print(f"  consumer_rejects {rejects()}")
    for stream in DURABLE:
        assert_exact(table[stream])
    assert table["amo"].duplicates_in_readings == 0 and table["amo"].lost == 0
    assert rig.consumer_query("SELECT count(*) FROM readings WHERE epoch = 'bogus-epoch'") == [(0,)]
    assert rig.consumer.proc is not None and rig.consumer.proc.poll() is None
    log = rig.consumer.log_text()
    for reason in garbage:  # one clear line per reason, the rest counted
        assert len(re.findall(rf"topic={topic} payload skipped: {reason}:", log)) == 1, reason
    assert "Traceback" not in log
    assert rig.consumer.terminate() == 0
