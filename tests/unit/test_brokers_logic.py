"""The broker keys (`url` list, `protocol`, `max_qos`), what the link learns of a broker
(`_ceiling`: MQTT version per URL, the QoS ceiling) and the `_status` payload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.registry import DRIVERS
from gateway.config.common import BrokerAddress, BrokerEndpoints, ConfigError
from gateway.config.consumer_config import load_consumer_config
from gateway.config.gateway_config import load_gateway_config
from gateway.core.presence import (
    MAX_STATUS_BYTES,
    GatewayStatus,
    decode_status,
    is_status_topic,
    status_topic,
)
from gateway.mqtt._ceiling import MQTT5, MQTT311, BrokerChoice

GATEWAY = """\
version: 1
gateway:
  id: gw1
broker:
{broker}
devices:
  - id: climate
    driver: simulator
    streams:
      - name: {stream}
        field: temp_c
        delivery: exactly-once
"""
A = BrokerAddress("a", 1883, tls=False)
B = BrokerAddress("b", 1883, tls=False)


def gateway(tmp_path: Path, broker: str, stream: str = "temperature") -> BrokerEndpoints:
    path = tmp_path / "gw.yaml"
    path.write_text(GATEWAY.format(broker=broker, stream=stream), encoding="utf-8")
    return load_gateway_config(path, DRIVERS).broker.endpoints


def problems(tmp_path: Path, broker: str, stream: str = "temperature") -> str:
    with pytest.raises(ConfigError) as caught:
        gateway(tmp_path, broker, stream)
    return str(caught.value)


def test_defaults_are_one_local_url_auto_and_a_learnt_ceiling(tmp_path: Path) -> None:
    endpoints = gateway(tmp_path, "  keepalive: 30s")
    assert endpoints == BrokerEndpoints((BrokerAddress("127.0.0.1", 1883, tls=False),), "auto",
                                        None)


def test_a_list_of_urls_protocol_and_max_qos(tmp_path: Path) -> None:
    endpoints = gateway(tmp_path, "  url: [mqtt://a:1883, mqtts://b:8883]\n"
                                  "  protocol: '3.1.1'\n  max_qos: 1")
    assert endpoints.addresses == (A, BrokerAddress("b", 8883, tls=True))
    assert endpoints.protocol == "3.1.1" and endpoints.max_qos == 1
    assert gateway(tmp_path, "  protocol: 5").protocol == "5"


@pytest.mark.parametrize(("broker", "words"), [
    ("  url: [mqtt://a:1883, http://b]", ("broker.url[1]", "mqtt://")),
    ("  url: []", ("broker.url", "a list of 1 to 16")),
    ("  protocol: 4", ("broker.protocol", "auto, 5, 3.1.1")),
    ("  protocol: 3.1", ("broker.protocol",)),
    ("  max_qos: 3", ("broker.max_qos", "0 to 2")),
])
def test_bad_broker_keys_are_named(tmp_path: Path, broker: str, words: tuple[str, ...]) -> None:
    text = problems(tmp_path, broker)
    for word in words:
        assert word in text, text


def test_status_is_reserved_as_a_stream_name(tmp_path: Path) -> None:
    text = problems(tmp_path, "  keepalive: 30s", stream="_status")
    assert "reserved for the gateway's online status" in text, text


def test_the_consumer_reads_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("version: 1\nbroker:\n  url: [mqtt://a:1883, mqtt://b:1883]\n"
                    "  client_id: c1\n  max_qos: 1\n", encoding="utf-8")
    config = load_consumer_config(path)
    assert config.endpoints.addresses == (A, B) and config.endpoints.max_qos == 1
    assert config.address == A


def choice(protocol: str = "auto", max_qos: int | None = None) -> BrokerChoice:
    return BrokerChoice(BrokerEndpoints((A, B), protocol, max_qos))


def test_auto_falls_back_to_3_1_1_per_url_and_remembers_it() -> None:
    broker = choice()
    assert broker.protocol == MQTT5
    assert not broker.downgrade(0x87)  # not authorized: no reason to try another version
    assert broker.downgrade(0x84)
    assert broker.protocol == MQTT311
    assert not broker.downgrade(0x84)  # already 3.1.1: a refusal stays a refusal
    broker.next_url()
    assert broker.address == B and broker.protocol == MQTT5
    assert broker.downgrade(None)  # closed right after CONNECT
    broker.next_url()
    assert broker.address == A and broker.protocol == MQTT311


def test_a_fixed_protocol_never_changes() -> None:
    assert not choice("5").downgrade(0x84)
    assert choice("3.1.1").protocol == MQTT311


def test_the_qos_ceiling_from_connack_config_and_learning() -> None:
    broker = choice()
    assert broker.max_qos == 2 and broker.max_qos_source == "MQTT"
    assert not broker.qos2_refused(None)  # no QoS 2 unanswered
    assert not broker.qos2_refused(30.0)  # long after: some other reason
    assert broker.qos2_refused(0.01)
    assert broker.max_qos == 1 and broker.max_qos_source.startswith("learnt")
    assert not broker.qos2_refused(0.01)  # learnt once
    broker.connack_max_qos = 0
    assert broker.max_qos == 0 and broker.max_qos_source == "CONNACK Maximum QoS"
    fixed = choice(max_qos=2)
    assert not fixed.qos2_refused(0.01)  # set by hand: not learnt
    assert fixed.max_qos == 2 and fixed.max_qos_source == "broker.max_qos"


STATUS = GatewayStatus("gw1", "online", "e1", 1_700_000_000.5, "0.3.0", {"b": "up", "a": "down"})


def test_a_status_round_trips_and_its_topic_is_recognised() -> None:
    assert decode_status(STATUS.encode()) == STATUS
    body = json.loads(STATUS.encode())
    assert body["state"] == "online" and body["devices"] == {"a": "down", "b": "up"}
    assert "reason" not in body
    assert status_topic("gw/gw1") == "gw/gw1/_status"
    assert is_status_topic("gw/gw1/_status") and not is_status_topic("gw/gw1/dev/temp")


@pytest.mark.parametrize(("payload", "why"), [
    (b"x" * (MAX_STATUS_BYTES + 1), "more than"),
    (b"{", "not JSON"),
    (b"[" * 60000, "not JSON"),  # nested too deeply: a reason, not a crash
    (b'{"v": 2}', "version 1"),
    (b'{"v":1,"gateway":"g","state":"away","epoch":"e","since":1,"version":"v"}', "state"),
    (b'{"v":1,"gateway":"g\\u0000","state":"online","epoch":"e","since":1,"version":"v"}',
     "gateway"),
    (b'{"v":1,"gateway":"g","state":"online","epoch":"e","since":NaN,"version":"v"}', "since"),
    (b'{"v":1,"gateway":"g","state":"online","epoch":"e","since":1,"version":"v",'
     b'"devices":{"d":"sideways"}}', "devices"),
])
def test_a_bad_status_says_why(payload: bytes, why: str) -> None:
    found = decode_status(payload)
    assert isinstance(found, str) and why in found, found


def test_topic_aliases_up_to_the_maximum_and_restored_before_a_resend() -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from gateway.mqtt._alias import TopicAliases  # noqa: PLC0415

    aliases = TopicAliases()
    assert aliases.route("t/a") == ("t/a", None)  # maximum 0: no aliases
    aliases.reset(2)
    first, props = aliases.route("t/a")
    assert first == "t/a" and props is not None and props.alias == 1  # sets alias 1
    assert props.pack() == b"\x03\x23\x00\x01"
    assert aliases.route("t/a") == ("", props)
    assert aliases.route("t/b")[1] is not None
    assert aliases.route("t/c") == ("t/c", None)  # beyond the broker's maximum
    kept = {7: SimpleNamespace(_topic=b"", properties=props),
            8: SimpleNamespace(_topic=b"t/c", properties=None)}
    aliases.restore(kept)
    assert (kept[7]._topic, kept[7].properties) == (b"t/a", None)
    assert kept[8]._topic == b"t/c"
    aliases.reset(0)
    assert aliases.route("t/a") == ("t/a", None)


def test_a_close_before_connack_downgrades_only_until_3_1_1_fails_alike() -> None:
    broker = choice()
    assert broker.downgrade(None) and broker.protocol == MQTT311
    broker.unanswered()  # closed again in 3.1.1: a proxy whose broker is down, say
    assert broker.protocol == MQTT5
    assert broker.downgrade(None)
    broker.answered()  # a 3.1.1 CONNACK: it is a 3.1.1 broker
    broker.unanswered()
    assert broker.protocol == MQTT311


def test_a_url_that_answered_mqtt5_is_not_downgraded_by_a_closed_connection() -> None:
    broker = choice()
    broker.answered()
    assert not broker.downgrade(None)
    assert broker.protocol == MQTT5
    assert broker.downgrade(0x84)  # an explicit answer still counts
