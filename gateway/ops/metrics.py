"""The Prometheus endpoint shared by the gateway and the consumer (off unless configured).

This module knows no service: it serves one collector and one sampled
histogram, both described by a `MetricTable` (name -> kind and help). The
gateway's collector lives in gateway/edge/metrics.py, the consumer's in
gateway/cloud/metrics.py; each reads a small frozen snapshot of its service
at scrape time, in the HTTP server's thread, never the service's internals.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.config.common import ListenAddress
from gateway.ops.scrape_server import ScrapeServer

log = logging.getLogger("gateway.metrics")

# name -> (type, help); a counter's samples end in _total, a histogram's in _bucket/_sum/_count.
MetricTable = dict[str, tuple[str, str]]


def sample_names(metrics: MetricTable) -> set[str]:
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


class Families:
    """Builds metric families from a name table."""

    def __init__(self, table: MetricTable) -> None:
        self.table = table

    def value(self, name: str, value: float) -> Metric:
        """One unlabelled counter or gauge."""
        kind, text = self.table[name]
        if kind == "counter":
            return CounterMetricFamily(name, text, value=value)
        return GaugeMetricFamily(name, text, value=value)

    def labelled(self, name: str, label: str, values: Iterable[tuple[str, float]]) -> Metric:
        """A counter or gauge with one label."""
        kind, text = self.table[name]
        family: CounterMetricFamily | GaugeMetricFamily = (
            CounterMetricFamily(name, text, labels=[label]) if kind == "counter"
            else GaugeMetricFamily(name, text, labels=[label]))
        for key, value in values:
            family.add_metric([key], value)
        return family


class MetricsEndpoint:
    """A Prometheus HTTP endpoint in a thread of its own."""

    def __init__(self, listen: ListenAddress, collector: Collector, table: MetricTable,
                 histogram: str, buckets: tuple[float, ...]) -> None:
        self.listen = listen
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(collector)
        kind, text = table[histogram]
        if kind != "histogram":
            raise ValueError(f"{histogram} is a {kind} in its table, not a histogram")
        self.histogram = Histogram(histogram, text, buckets=buckets, registry=self.registry)
        self._server: ScrapeServer | None = None

    def start(self) -> bool:
        """Listen; False (logged) when the address cannot be bound."""
        try:
            self._server = ScrapeServer(self.listen.host, self.listen.port, self.registry)
        except OSError as exc:
            log.error("metrics: cannot listen on %s: %s; running without the metrics endpoint",
                      self.listen, exc.strerror or exc)
            return False
        self._server.serve_in_thread()
        log.info("metrics: Prometheus endpoint on http://%s/metrics", self.listen)
        return True

    def observe(self, seconds: float) -> None:
        """One sample of the histogram."""
        self.histogram.observe(seconds)

    def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
