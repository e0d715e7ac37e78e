"""The gateway's Prometheus metrics: the names it exports and the collector behind them.

Figures come from a `GatewaySnapshot` taken at scrape time; what lives in the
store (backlog, oldest age, drops) is read through a connection of the
scrape's own, as `status` does. `GATEWAY_METRICS` names every metric; the
Grafana dashboard in dashboards/ uses only these (a test checks it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from gateway.config.common import ListenAddress
from gateway.config.gateway_config import GatewayConfig
from gateway.core.delivery import DeliveryClass
from gateway.edge.snapshot import GatewaySnapshot
from gateway.edge.status import StatusError, read_status
from gateway.ops.metrics import Families, MetricsEndpoint, MetricTable, disk_write_bytes

log = logging.getLogger("gateway.metrics")

LATENCY_HISTOGRAM = "mqtt_gateway_publish_latency_seconds"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)

GATEWAY_METRICS: MetricTable = {
    "mqtt_gateway_readings_read": ("counter", "Readings taken from devices."),
    "mqtt_gateway_readings_stored": ("counter", "Durable readings committed to the store."),
    "mqtt_gateway_messages_published": ("counter", "Messages handed to the broker connection."),
    "mqtt_gateway_readings_acknowledged": ("counter", "Durable readings acknowledged by the broker."),
    "mqtt_gateway_at_most_once_sent": ("counter", "At-most-once readings written to the broker."),
    "mqtt_gateway_readings_dropped": ("counter", "Readings dropped, by reason (from the store)."),
    "mqtt_gateway_backlog_readings": ("gauge", "Readings waiting to be delivered, by delivery class."),
    "mqtt_gateway_oldest_pending_age_seconds": ("gauge", "Age of the oldest stored reading."),
    "mqtt_gateway_in_flight_messages": ("gauge", "Messages sent and not yet acknowledged."),
    "mqtt_gateway_confirmation_waiting_readings": (
        "gauge", "Readings the broker acknowledged that wait for the consumer's confirmation."),
    "mqtt_gateway_confirmation_oldest_wait_seconds": (
        "gauge", "How long the oldest reading has waited for a confirmation (0: none waits)."),
    "mqtt_gateway_readings_confirmed": (
        "counter", "Readings deleted by the consumer's end-to-end confirmations."),
    "mqtt_gateway_confirmations_ignored": (
        "counter", "Confirmation marks ignored (forged, unknown, too large, not acknowledged)."),
    "mqtt_gateway_store_lost_unknown": (
        "counter", "Stores lost with an unknown number of readings (emptied or unreadable)."),
    "mqtt_gateway_broker_connected": ("gauge", "1 while connected to the broker."),
    "mqtt_gateway_reconnects": ("counter", "Connections to the broker after the first."),
    "mqtt_gateway_broker_info": ("gauge", "1, labelled with the broker URL in use."),
    "mqtt_gateway_broker_max_qos": ("gauge", "The highest QoS the broker takes (learnt or set)."),
    "mqtt_gateway_store_bytes": ("gauge", "Bytes used by the store's live pages."),
    "mqtt_gateway_disk_write_bytes": ("counter",
                                      "Bytes this process caused to be written to storage "
                                      "(/proc/self/io write_bytes; flash wear)."),
    LATENCY_HISTOGRAM: ("histogram", "Seconds from publish to PUBACK/PUBCOMP (sampled)."),
}


def gateway_endpoint(config: GatewayConfig, listen: ListenAddress,
                     snapshot: Callable[[], GatewaySnapshot]) -> MetricsEndpoint:
    """The gateway's metrics endpoint (not started)."""
    return MetricsEndpoint(listen, GatewayCollector(snapshot, config), GATEWAY_METRICS,
                           LATENCY_HISTOGRAM, LATENCY_BUCKETS)


class GatewayCollector(Collector):
    """Reads a gateway's snapshot, and its store, at scrape time."""

    def __init__(self, snapshot: Callable[[], GatewaySnapshot], config: GatewayConfig) -> None:
        self.snapshot = snapshot
        self.config = config
        self.families = Families(GATEWAY_METRICS)

    def collect(self) -> Iterator[Metric]:
        """The gateway's figures now."""
        s, f = self.snapshot(), self.families
        yield f.value("mqtt_gateway_readings_read", s.read)
        yield f.value("mqtt_gateway_readings_stored", s.stored)
        yield f.value("mqtt_gateway_messages_published", s.published)
        yield f.value("mqtt_gateway_readings_acknowledged", s.acknowledged)
        yield f.value("mqtt_gateway_at_most_once_sent", s.at_most_once_sent)
        yield f.value("mqtt_gateway_in_flight_messages", s.in_flight)
        yield f.value("mqtt_gateway_broker_connected", 1 if s.broker_connected else 0)
        yield f.value("mqtt_gateway_reconnects", s.reconnects)
        yield f.labelled("mqtt_gateway_broker_info", "url", [(s.broker_url, 1)])
        yield f.value("mqtt_gateway_broker_max_qos", s.broker_max_qos)
        yield f.value("mqtt_gateway_store_bytes", s.store_bytes)
        yield f.value("mqtt_gateway_readings_confirmed", s.confirmed)
        yield f.value("mqtt_gateway_confirmations_ignored", s.confirmations_ignored)
        written = disk_write_bytes()
        if written is not None:
            yield f.value("mqtt_gateway_disk_write_bytes", written)
        yield from self._from_store(s)

    def _from_store(self, s: GatewaySnapshot) -> Iterator[Metric]:
        f = self.families
        try:
            report = read_status(self.config)
        except StatusError as exc:
            log.debug("metrics: store not readable: %s", exc)
            return
        backlog = report["backlog"]
        yield f.labelled("mqtt_gateway_backlog_readings", "delivery", [
            (d.value, s.at_most_once_queued if d is DeliveryClass.AT_MOST_ONCE
             else backlog[d.value]["pending"])
            for d in DeliveryClass])
        yield f.labelled("mqtt_gateway_oldest_pending_age_seconds", "delivery", [
            (d.value, backlog[d.value]["oldest_age_s"] or 0.0)
            for d in DeliveryClass if d is not DeliveryClass.AT_MOST_ONCE])
        yield f.labelled("mqtt_gateway_readings_dropped", "reason", sorted(report["drops"].items()))
        yield f.value("mqtt_gateway_store_lost_unknown", report["store_lost_unknown"])
        confirmation = report["confirmation"]
        yield f.value("mqtt_gateway_confirmation_waiting_readings", confirmation["waiting"])
        yield f.value("mqtt_gateway_confirmation_oldest_wait_seconds",
                      confirmation["oldest_wait_s"] or 0.0)
