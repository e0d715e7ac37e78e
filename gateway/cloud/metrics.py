"""The consumer's Prometheus metrics: the names it exports, the collector, the lag sampler.

Figures come from a `ConsumerSnapshot` taken at scrape time; the gap total
lives in the database and is read through a short connection of the scrape's
own. `CONSUMER_METRICS` names every metric; the Grafana dashboard in
dashboards/ uses only these (a test checks it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from gateway.cloud.database import read_gaps
from gateway.cloud.snapshot import ConsumerSnapshot
from gateway.core.envelope import Envelope
from gateway.ops.metrics import Families, MetricsEndpoint, MetricTable, disk_write_bytes

log = logging.getLogger("gateway.metrics")

LAG_HISTOGRAM = "mqtt_consumer_lag_seconds"
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
               86400.0)
LAG_SAMPLE = 16  # one reading in this many of a committed batch is timed

CONSUMER_METRICS: MetricTable = {
    "mqtt_consumer_readings_committed": ("counter", "New readings committed to the database."),
    "mqtt_consumer_duplicates": ("counter", "Duplicate readings dropped."),
    "mqtt_consumer_gaps": ("counter", "Seqs missing in the streams seen (from the database)."),
    "mqtt_consumer_rejects": ("counter", "Payloads rejected, by reason."),
    "mqtt_consumer_broker_connected": ("gauge", "1 while connected to the broker."),
    "mqtt_consumer_reconnects": ("counter", "Connections to the broker after the first."),
    "mqtt_consumer_broker_info": ("gauge", "1, labelled with the broker URL in use."),
    "mqtt_consumer_confirmations_sent": ("counter", "End-to-end confirmation messages sent."),
    LAG_HISTOGRAM: ("histogram", "Seconds from a reading's ts to its commit (sampled)."),
    "mqtt_consumer_disk_write_bytes": ("counter",
                                       "Bytes this process caused to be written to storage."),
}


class ConsumerCollector(Collector):
    """Reads a consumer's snapshot, and its database's gap total, at scrape time."""

    def __init__(self, snapshot: Callable[[], ConsumerSnapshot], database: str,
                 password: str | None = None) -> None:
        self.snapshot = snapshot
        self.database = database
        self._password = password
        self.families = Families(CONSUMER_METRICS)

    def collect(self) -> Iterator[Metric]:
        """The consumer's figures now."""
        s, f = self.snapshot(), self.families
        yield f.value("mqtt_consumer_readings_committed", s.committed)
        yield f.value("mqtt_consumer_duplicates", s.duplicates)
        yield f.value("mqtt_consumer_broker_connected", 1 if s.broker_connected else 0)
        yield f.value("mqtt_consumer_reconnects", s.reconnects)
        yield f.labelled("mqtt_consumer_broker_info", "url", [(s.broker_url, 1)])
        yield f.value("mqtt_consumer_confirmations_sent", s.confirmations_sent)
        yield f.labelled("mqtt_consumer_rejects", "reason", sorted(s.rejects.items()))
        written = disk_write_bytes()
        if written is not None:
            yield f.value("mqtt_consumer_disk_write_bytes", written)
        gaps = consumer_gaps(self.database, self._password)
        if gaps is not None:
            yield f.value("mqtt_consumer_gaps", gaps)


def consumer_gaps(database: str, password: str | None = None) -> int | None:
    """Gaps over every stream, read through a connection of its own; None when unreadable."""
    try:
        return read_gaps(database, password)
    except Exception as exc:  # noqa: BLE001 - any database error: the metric is left out
        log.debug("metrics: gaps not readable: %s", type(exc).__name__)
        return None


def lag_observer(endpoint: MetricsEndpoint) -> Callable[[list[Envelope]], None]:
    """Samples the lag of each committed batch (reading ts to now) into the endpoint."""
    def observe(readings: list[Envelope]) -> None:
        now = time.time()
        for env in readings[::LAG_SAMPLE]:
            endpoint.observe(max(0.0, now - env.ts))
    return observe
