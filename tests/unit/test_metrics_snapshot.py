"""The metrics collectors read a snapshot of their service, never the service itself."""

from __future__ import annotations

from pathlib import Path

from gateway.cloud.metrics import ConsumerCollector
from gateway.cloud.snapshot import ConsumerSnapshot
from gateway.edge.metrics import GatewayCollector
from gateway.edge.snapshot import GatewaySnapshot
from tests.unit.test_service_logic import gateway


def _samples(collector: GatewayCollector | ConsumerCollector) -> dict[str, float]:
    return {s.name: s.value for family in collector.collect() for s in family.samples
            if not s.labels}


def test_gateway_collector_exports_the_snapshot(tmp_path: Path) -> None:
    config = gateway(tmp_path)
    taken: list[GatewaySnapshot] = []

    def snapshot() -> GatewaySnapshot:
        s = GatewaySnapshot(read=12, stored=9, published=11, acknowledged=8, at_most_once_sent=2,
                            at_most_once_queued=1, in_flight=3, broker_connected=True,
                            connections=4, store_bytes=4096)
        taken.append(s)
        return s

    samples = _samples(GatewayCollector(snapshot, config))
    assert len(taken) == 1, "one snapshot per scrape"
    assert samples["mqtt_gateway_readings_read_total"] == 12
    assert samples["mqtt_gateway_readings_stored_total"] == 9
    assert samples["mqtt_gateway_readings_acknowledged_total"] == 8
    assert samples["mqtt_gateway_in_flight_messages"] == 3
    assert samples["mqtt_gateway_broker_connected"] == 1
    assert samples["mqtt_gateway_reconnects_total"] == 3
    assert samples["mqtt_gateway_store_bytes"] == 4096


def test_consumer_collector_exports_the_snapshot(tmp_path: Path) -> None:
    snap = ConsumerSnapshot(committed=40, duplicates=5, rejects={"bad_json": 2},
                            broker_connected=False, connections=1, confirmations_sent=7)
    collector = ConsumerCollector(lambda: snap, str(tmp_path / "absent.sqlite"))
    families = {f.name: f for f in collector.collect()}
    samples = _samples(collector)
    assert samples["mqtt_consumer_readings_committed_total"] == 40
    assert samples["mqtt_consumer_duplicates_total"] == 5
    assert samples["mqtt_consumer_broker_connected"] == 0
    assert samples["mqtt_consumer_reconnects_total"] == 0
    assert samples["mqtt_consumer_confirmations_sent_total"] == 7
    [reject] = families["mqtt_consumer_rejects"].samples
    assert reject.labels == {"reason": "bad_json"} and reject.value == 2
