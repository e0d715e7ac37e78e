"""The metrics endpoint on a real socket: served, scraped, and a busy port is no crash."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gateway.config.common import ListenAddress
from gateway.edge.metrics import GATEWAY_METRICS, LATENCY_BUCKETS, LATENCY_HISTOGRAM
from gateway.ops.metrics import MetricsEndpoint
from tests.support.ports import free_port


class _One(Collector):
    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("mqtt_gateway_in_flight_messages", "test", value=7)


def test_endpoint_serves_the_collector_and_the_histogram() -> None:
    endpoint = MetricsEndpoint(ListenAddress("127.0.0.1", free_port()), _One(), GATEWAY_METRICS,
                               LATENCY_HISTOGRAM, LATENCY_BUCKETS)
    assert endpoint.start()
    try:
        endpoint.observe(0.003)
        endpoint.observe(0.2)
        url = f"http://127.0.0.1:{endpoint.listen.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples = {s.name: s.value for f in text_string_to_metric_families(text)
                   for s in f.samples if not s.labels}
        assert samples["mqtt_gateway_in_flight_messages"] == 7
        assert samples["mqtt_gateway_publish_latency_seconds_count"] == 2
        assert abs(samples["mqtt_gateway_publish_latency_seconds_sum"] - 0.203) < 1e-9
    finally:
        endpoint.close()


def test_a_busy_port_is_logged_and_the_service_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        endpoint = MetricsEndpoint(ListenAddress("127.0.0.1", port), _One(), GATEWAY_METRICS,
                                   LATENCY_HISTOGRAM, LATENCY_BUCKETS)
        assert not endpoint.start()
        endpoint.close()
    text = caplog.text
    assert f"metrics: cannot listen on 127.0.0.1:{port}" in text
    assert "running without the metrics endpoint" in text
