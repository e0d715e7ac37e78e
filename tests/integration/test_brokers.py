"""Brokers as users have them: mosquitto in MQTT 5 and 3.1.1, NATS's MQTT listener (3.1.1
only, no QoS 2) alone and as a three-node cluster that loses a node mid-stream, and the
MQTT last will that says a gateway vanished.

Every broker is a real process started by the test on free loopback ports. Each test
states its proof as counts per delivery class with the shipped defaults (end-to-end
confirmation): for at-least-once and exactly-once, 0 lost and 0 duplicates in `readings`.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto
from tests.support.nats import NatsServer, nats_binary, nats_cluster, wait_cluster_ready
from tests.support.rabbitmq import RabbitMqtt, RabbitUnavailable
from tests.support.rig import Rig, assert_durable_exact
from tests.support.waiting import wait_for

DELIVERY = 120.0


def _nats_or_skip() -> None:
    try:
        nats_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))


def _runtime(rig: Rig) -> dict[str, object]:
    runtime = rig.status()["runtime"]
    assert isinstance(runtime, dict)
    return runtime


def _gateway_row(rig: Rig) -> tuple[object, ...] | None:
    rows = rig.consumer_query("SELECT state, devices, reason FROM gateways WHERE gateway = ?",
                              (rig.gateway_id,))
    return rows[0] if rows else None


def test_mosquitto_over_mqtt_3_1_1(rig_factory: type[Rig]) -> None:
    rig = rig_factory(tap=False, broker_keys="protocol: '3.1.1'")
    rig.start_consumer()
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker mqtt://127\.0\.0\.1:\d+ \(MQTT 3\.1\.1\)")
    rig.consumer.wait_log(r"connected to broker mqtt://127\.0\.0\.1:\d+ \(MQTT 3\.1\.1\)")
    rig.send(150)
    rig.wait_delivered(timeout=DELIVERY)
    # The consumer's persistent 3.1.1 session (clean_session=False) and manual acks: a
    # SIGKILL of the consumer loses nothing.
    rig.consumer.kill()
    rig.send(100)
    rig.wait_stored()
    rig.start_consumer()
    rig.wait_delivered(timeout=DELIVERY)
    table = rig.report("mosquitto, MQTT 3.1.1, consumer SIGKILLed (shipped defaults)")
    assert_durable_exact(table)
    wait_for(lambda: _runtime(rig).get("broker_protocol") == "3.1.1", timeout=20,
             what="status showing MQTT 3.1.1")
    assert _runtime(rig)["broker_max_qos"] == 2


def test_mosquitto_mqtt5_says_the_protocol_and_the_status(rig_factory: type[Rig]) -> None:
    rig = rig_factory(tap=False)
    rig.start_consumer()
    rig.start_gateway()
    rig.gateway.wait_log(r"connected to broker mqtt://127\.0\.0\.1:\d+ \(MQTT 5\)")
    rig.send(50)
    rig.wait_delivered(timeout=DELIVERY)
    assert_durable_exact(rig.report("mosquitto, MQTT 5 (shipped defaults)"))
    wait_for(lambda: (row := _gateway_row(rig)) is not None and row[0] == "online"
             and json.loads(str(row[1])) == {"dev": "up"},
             timeout=20, what="the gateway online with its device up in `gateways`")
    assert rig.gateway.terminate() == 0
    wait_for(lambda: (row := _gateway_row(rig)) is not None and row[0] == "offline"
             and row[2] == "stopped", timeout=20, what="the clean stop's offline status")
    done = rig.cli("status", "--config", str(rig.consumer.config))
    assert done.returncode == 0, done.stderr
    assert f"{rig.gateway_id}" in done.stdout and "OFFLINE (stopped)" in done.stdout, done.stdout


def test_nats_mqtt_listener(rig_factory: type[Rig], tmp_path: Path) -> None:
    _nats_or_skip()
    nats = NatsServer(tmp_path / "nats")
    nats.start()
    rig = rig_factory(tap=False, broker=nats)
    try:
        rig.start_consumer()
        rig.start_gateway()
        # MQTT 5 is refused ("unsupported protocol version"): 3.1.1 from then on.
        rig.gateway.wait_log(r"does not speak MQTT 5.*using MQTT 3\.1\.1")
        rig.gateway.wait_log(r"connected to broker mqtt://127\.0\.0\.1:\d+ \(MQTT 3\.1\.1\)")
        rig.send(200)
        # The first QoS 2 PUBLISH closes the connection: QoS 1 from then on, said once.
        rig.gateway.wait_log(r"closed the connection right after a QoS 2 PUBLISH", timeout=30)
        rig.wait_delivered(timeout=DELIVERY)
        table = rig.report("NATS MQTT listener (3.1.1, QoS <= 1; shipped defaults)")
        assert_durable_exact(table)
        assert rig.gateway.log_text().count("right after a QoS 2 PUBLISH") == 1
        wait_for(lambda: _runtime(rig)["broker_max_qos"] == 1, timeout=20,
                 what="status showing the learnt QoS ceiling")
        runtime = _runtime(rig)
        assert runtime["broker_protocol"] == "3.1.1"
        assert str(runtime["broker_max_qos_source"]).startswith("learnt")
        text = rig.cli("status", "--config", str(rig.gateway.config)).stdout
        assert "broker speaks MQTT 3.1.1, QoS at most 1 (learnt" in text, text
    finally:
        nats.stop()


def test_nats_cluster_loses_the_gateways_node_mid_stream(rig_factory: type[Rig],
                                                          tmp_path: Path) -> None:
    _nats_or_skip()
    nodes = nats_cluster(tmp_path / "cluster")
    for node in nodes:
        node.start()
    try:
        wait_cluster_ready(nodes)
        urls = [node.url for node in nodes]
        # The gateway starts on the first node, the consumer on the second.
        rig = rig_factory(tap=False, broker=nodes[0], urls=urls,
                          broker_keys="max_qos: 1")
        rig.consumer.config.write_text(rig.consumer.config.read_text().replace(
            f"url: [{', '.join(urls)}]", f"url: [{urls[1]}, {urls[2]}, {urls[0]}]"))
        rig.start_consumer()
        rig.start_gateway()
        rig.gateway.wait_log(r"connected to broker " + nodes[0].url.replace(".", r"\."))
        # Cross-node delivery starts some seconds after the cluster forms.
        rig.send(20)
        rig.wait_delivered(timeout=DELIVERY)
        rig.send(150, per_second=100)
        nodes[0].kill()
        rig.send(150, per_second=100)
        rig.gateway.wait_log(r"connected to broker mqtt://127\.0\.0\.1:\d+", count=2,
                             timeout=DELIVERY)
        rig.wait_delivered(timeout=DELIVERY)
        table = rig.report("three-node NATS cluster, the gateway's node SIGKILLed "
                           "(shipped defaults)")
        assert_durable_exact(table)
        wait_for(lambda: _runtime(rig)["broker"] in (nodes[1].url, nodes[2].url), timeout=20,
                 what="status showing the node in use")
    finally:
        for node in nodes:
            node.stop()


def test_rabbitmq_mqtt_plugin(rig_factory: type[Rig]) -> None:
    rabbit = RabbitMqtt()
    try:
        rabbit.start()
    except RabbitUnavailable as exc:
        pytest.skip(f"RabbitMQ's MQTT plugin cannot be enabled here: {exc}")
    try:
        rig = rig_factory(tap=False, broker=rabbit)
        rig.start_consumer()
        rig.start_gateway()
        rig.gateway.wait_log(r"connected to broker mqtt://127\.0\.0\.1:\d+ \(MQTT 3\.1\.1\)")
        rig.send(200)
        rig.wait_delivered(timeout=DELIVERY)
        table = rig.report("RabbitMQ MQTT plugin (3.1.1; shipped defaults)")
        assert_durable_exact(table)
        rig.gateway.terminate()
        rig.consumer.terminate()
    finally:
        rabbit.stop()


def test_the_will_says_offline_when_the_gateway_vanishes(tmp_path: Path) -> None:
    from tests.support.rig import Rig as PlainRig  # noqa: PLC0415

    rig = PlainRig(tmp_path, tap=False)
    try:
        rig.start_consumer()
        rig.start_gateway()
        wait_for(lambda: (row := _gateway_row(rig)) is not None and row[0] == "online",
                 timeout=20, what="online status")
        rig.gateway.kill()
        # keepalive 5s: the broker publishes the will within 1.5 keepalives.
        wait_for(lambda: (row := _gateway_row(rig)) is not None and row[0] == "offline",
                 timeout=7.5 + 1.0, what="the will's offline status within 1.5 keepalives")
        row = _gateway_row(rig)
        assert row is not None and row[2] == "connection lost"
        rig.start_gateway()
        wait_for(lambda: (row := _gateway_row(rig)) is not None and row[0] == "online",
                 timeout=20, what="online again after the restart")
        retained = _retained_status(rig.broker, rig.gateway_id)
        assert retained["state"] == "online", retained
    finally:
        rig.close()


def _retained_status(broker: object, gateway_id: str) -> dict[str, object]:
    """The retained `_status` message, read by a fresh subscriber."""
    from paho.mqtt import subscribe  # noqa: PLC0415

    assert isinstance(broker, Mosquitto)
    message = subscribe.simple(f"gw/{gateway_id}/_status", hostname="127.0.0.1",
                               port=broker.port, retained=True, msg_count=1)
    body: dict[str, object] = json.loads(message.payload)  # type: ignore[union-attr]
    return body


def test_gateways_table_on_sqlite_has_the_columns(tmp_path: Path) -> None:
    from gateway.cloud.database import open_readings_db  # noqa: PLC0415
    from gateway.core.presence import GatewayStatus  # noqa: PLC0415

    db = open_readings_db(str(tmp_path / "c.sqlite"))
    db.store_statuses([GatewayStatus("g1", "online", "e1", 1.0e9, "0.3.0", {"d": "up"})])
    db.store_statuses([GatewayStatus("g1", "offline", "e1", 1.0e9, "0.3.0", {"d": "down"},
                                     "stopped")])
    db.close()
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    rows = conn.execute("SELECT gateway, state, epoch, version, devices, reason FROM gateways"
                        ).fetchall()
    conn.close()
    assert rows == [("g1", "offline", "e1", "0.3.0", '{"d": "down"}', "stopped")]


def test_topic_aliases_save_bytes_where_the_broker_allows_them(tmp_path: Path) -> None:
    from tests.support.rig import Rig as PlainRig  # noqa: PLC0415

    sent: dict[str, int] = {}
    lines = 300
    for name, extra in (("aliases", ""), ("none", "max_topic_alias 0\n")):
        rig = PlainRig(tmp_path / name, tap=False, via_proxy=True, broker_extra=extra)
        try:
            rig.start_consumer()
            rig.start_gateway()
            rig.gateway.wait_log(r"connected to broker")
            rig.send(lines)
            rig.wait_delivered(timeout=DELIVERY)
            assert_durable_exact(rig.report(f"mosquitto, MQTT 5, topic aliases: {name}"))
            assert rig.gateway.terminate() == 0
            assert rig.proxy is not None
            sent[name] = rig.proxy.bytes_up
        finally:
            rig.close()
    # Each of the 3 x `lines` readings' PUBLISH carries an alias (3 bytes of properties)
    # instead of its topic (e.g. gw/gw-test/dev/alo, 18 bytes).
    saved = sent["none"] - sent["aliases"]
    print(f"gateway -> broker bytes: {sent}; saved {saved} ({saved / (3 * lines):.1f} per reading)")
    assert saved >= 3 * lines * 12, sent
