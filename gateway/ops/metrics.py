"""The Prometheus endpoint of the gateway and of the consumer (off unless configured).

Figures are read from the live objects when Prometheus scrapes, in the
HTTP server's thread: plain ints and lengths only, nothing that the event
loop could be changing halfway. What lives in the database (backlog, drops,
gaps) is read through a connection of the scrape's own, as `status` does.
The hot path pays nothing but one sampled timestamp per LATENCY_SAMPLE
publishes and one per consumer batch.

`GATEWAY_METRICS` and `CONSUMER_METRICS` name every metric exported; the
Grafana dashboard in dashboards/ uses only these (a test checks it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.cloud.database import read_gaps
from gateway.config.common import ListenAddress
from gateway.core.delivery import DeliveryClass
from gateway.edge.status import StatusError, read_status

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from gateway.cloud.consumer import Consumer
    from gateway.core.envelope import Envelope
    from gateway.edge.service import Gateway

log = logging.getLogger("gateway.metrics")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
               86400.0)
LAG_SAMPLE = 16  # one reading in this many of a committed batch is timed

# name -> (type, help); a counter's samples end in _total, a histogram's in _bucket/_sum/_count.
GATEWAY_METRICS: dict[str, tuple[str, str]] = {
    "mqtt_gateway_readings_read": ("counter", "Readings taken from devices."),
    "mqtt_gateway_readings_stored": ("counter", "Durable readings committed to the store."),
    "mqtt_gateway_messages_published": ("counter", "Messages handed to the broker connection."),
    "mqtt_gateway_readings_acknowledged": ("counter", "Durable readings acknowledged by the broker."),
    "mqtt_gateway_at_most_once_sent": ("counter", "At-most-once readings written to the broker."),
    "mqtt_gateway_readings_dropped": ("counter", "Readings dropped, by reason (from the store)."),
    "mqtt_gateway_backlog_readings": ("gauge", "Readings waiting to be delivered, by delivery class."),
    "mqtt_gateway_oldest_pending_age_seconds": ("gauge", "Age of the oldest stored reading."),
    "mqtt_gateway_in_flight_messages": ("gauge", "Messages sent and not yet acknowledged."),
    "mqtt_gateway_broker_connected": ("gauge", "1 while connected to the broker."),
    "mqtt_gateway_reconnects": ("counter", "Connections to the broker after the first."),
    "mqtt_gateway_store_bytes": ("gauge", "Bytes used by the store's live pages."),
    "mqtt_gateway_disk_write_bytes": ("counter",
                                      "Bytes this process caused to be written to storage "
                                      "(/proc/self/io write_bytes; flash wear)."),
    "mqtt_gateway_publish_latency_seconds": ("histogram",
                                             "Seconds from publish to PUBACK/PUBCOMP (sampled)."),
}
CONSUMER_METRICS: dict[str, tuple[str, str]] = {
    "mqtt_consumer_readings_committed": ("counter", "New readings committed to the database."),
    "mqtt_consumer_duplicates": ("counter", "Duplicate readings dropped."),
    "mqtt_consumer_gaps": ("counter", "Seqs missing in the streams seen (from the database)."),
    "mqtt_consumer_rejects": ("counter", "Payloads rejected, by reason."),
    "mqtt_consumer_broker_connected": ("gauge", "1 while connected to the broker."),
    "mqtt_consumer_reconnects": ("counter", "Connections to the broker after the first."),
    "mqtt_consumer_confirmations_sent": ("counter", "End-to-end confirmation messages sent."),
    "mqtt_consumer_lag_seconds": ("histogram",
                                  "Seconds from a reading's ts to its commit (sampled)."),
    "mqtt_consumer_disk_write_bytes": ("counter",
                                       "Bytes this process caused to be written to storage."),
}


def sample_names(metrics: dict[str, tuple[str, str]]) -> set[str]:
    """Every sample name the exposition holds for these metrics."""
    names: set[str] = set()
    for name, (kind, _help) in metrics.items():
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def disk_write_bytes() -> int | None:
    """write_bytes of /proc/self/io: what this process sent to the block layer."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class _Families:
    """Builds metric families from the name table."""

    def __init__(self, table: dict[str, tuple[str, str]]) -> None:
        self.table = table

    def value(self, name: str, value: float) -> Metric:
        kind, text = self.table[name]
        if kind == "counter":
            return CounterMetricFamily(name, text, value=value)
        return GaugeMetricFamily(name, text, value=value)

    def labelled(self, name: str, label: str, values: Iterable[tuple[str, float]]) -> Metric:
        kind, text = self.table[name]
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(name, text, labels=[label]) if kind == "counter"
            else GaugeMetricFamily(name, text, labels=[label]))
        for key, value in values:
            family.add_metric([key], value)
        return family


class GatewayCollector(Collector):
    """Reads a running `Gateway` at scrape time."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.families = _Families(GATEWAY_METRICS)

    def collect(self) -> Iterator[Metric]:
        """The gateway's figures now."""
        gw, f = self.gateway, self.families
        yield f.value("mqtt_gateway_readings_read", gw.intake.read)
        yield f.value("mqtt_gateway_readings_stored", gw.stored)
        yield f.value("mqtt_gateway_messages_published", gw.link.published)
        yield f.value("mqtt_gateway_readings_acknowledged", gw.publisher.acknowledged)
        yield f.value("mqtt_gateway_at_most_once_sent", gw.publisher.sent_volatile)
        yield f.value("mqtt_gateway_in_flight_messages", gw.publisher.in_flight)
        yield f.value("mqtt_gateway_broker_connected", 1 if gw.broker_up else 0)
        yield f.value("mqtt_gateway_reconnects", max(0, gw.link.connections - 1))
        yield f.value("mqtt_gateway_store_bytes", gw.outbox.bytes_used)
        written = disk_write_bytes()
        if written is not None:
            yield f.value("mqtt_gateway_disk_write_bytes", written)
        try:
            report = read_status(gw.config)
        except StatusError as exc:
            log.debug("metrics: store not readable: %s", exc)
            return
        backlog = report["backlog"]
        volatile = len(gw.intake.volatile)
        yield f.labelled("mqtt_gateway_backlog_readings", "delivery", [
            (d.value, volatile if d is DeliveryClass.AT_MOST_ONCE else backlog[d.value]["pending"])
            for d in DeliveryClass])
        yield f.labelled("mqtt_gateway_oldest_pending_age_seconds", "delivery", [
            (d.value, backlog[d.value]["oldest_age_s"] or 0.0)
            for d in DeliveryClass if d is not DeliveryClass.AT_MOST_ONCE])
        yield f.labelled("mqtt_gateway_readings_dropped", "reason", sorted(report["drops"].items()))


class ConsumerCollector(Collector):
    """Reads a running `Consumer` at scrape time."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.families = _Families(CONSUMER_METRICS)

    def collect(self) -> Iterator[Metric]:
        """The consumer's figures now."""
        c, f = self.consumer, self.families
        yield f.value("mqtt_consumer_readings_committed", c.fresh)
        yield f.value("mqtt_consumer_duplicates", c.duplicates)
        yield f.value("mqtt_consumer_broker_connected", 1 if c.link.connected else 0)
        yield f.value("mqtt_consumer_reconnects", max(0, c.link.connections - 1))
        yield f.value("mqtt_consumer_confirmations_sent", c.confirmations_sent)
        yield f.labelled("mqtt_consumer_rejects", "reason", sorted(dict(c.rejects).items()))
        written = disk_write_bytes()
        if written is not None:
            yield f.value("mqtt_consumer_disk_write_bytes", written)
        gaps = consumer_gaps(c.config.database)
        if gaps is not None:
            yield f.value("mqtt_consumer_gaps", gaps)


def consumer_gaps(database: str) -> int | None:
    """Gaps over every stream, read through a connection of its own; None when unreadable."""
    try:
        return read_gaps(database)
    except Exception as exc:  # noqa: BLE001 - any database error: the metric is left out
        log.debug("metrics: gaps not readable: %s", type(exc).__name__)
        return None


class MetricsEndpoint:
    """A Prometheus HTTP endpoint in a thread of its own."""

    def __init__(self, listen: ListenAddress, collector: Collector, histogram: str,
                 buckets: tuple[float, ...]) -> None:
        self.listen = listen
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(collector)
        kind, text = (GATEWAY_METRICS | CONSUMER_METRICS)[histogram]
        assert kind == "histogram"
        self.histogram = Histogram(histogram, text, buckets=buckets, registry=self.registry)
        self._server: WSGIServer | None = None

    def start(self) -> bool:
        """Listen; False (logged) when the address cannot be bound."""
        try:
            self._server, _thread = start_http_server(self.listen.port, self.listen.host,
                                                      registry=self.registry)
        except OSError as exc:
            log.error("metrics: cannot listen on %s: %s; running without the metrics endpoint",
                      self.listen, exc.strerror or exc)
            return False
        log.info("metrics: Prometheus endpoint on http://%s/metrics", self.listen)
        return True

    def observe(self, seconds: float) -> None:
        """One sample of the histogram."""
        self.histogram.observe(seconds)

    def observe_lag(self, readings: list[Envelope]) -> None:
        """Sample the lag of a committed batch (reading ts to now)."""
        now = time.time()
        for env in readings[::LAG_SAMPLE]:
            self.histogram.observe(max(0.0, now - env.ts))

    def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
