"""The metrics endpoint on a real socket: served, scraped, and a busy port is no crash."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gateway.config.common import ListenAddress
from gateway.edge.metrics import GATEWAY_METRICS, LATENCY_BUCKETS, LATENCY_HISTOGRAM
from gateway.ops.metrics import MetricsEndpoint
from gateway.ops.scrape_server import MAX_CONNECTIONS, READ_TIMEOUT, respond
from tests.support.ports import free_port
from tests.support.waiting import wait_for


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


_SERVE = """
import sys, time
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from gateway.config.common import ListenAddress
from gateway.edge.metrics import GATEWAY_METRICS, LATENCY_BUCKETS, LATENCY_HISTOGRAM
from gateway.ops.metrics import MetricsEndpoint

class One(Collector):
    def collect(self):
        yield GaugeMetricFamily("mqtt_gateway_in_flight_messages", "test", value=7)

endpoint = MetricsEndpoint(ListenAddress("127.0.0.1", int(sys.argv[1])), One(), GATEWAY_METRICS,
                           LATENCY_HISTOGRAM, LATENCY_BUCKETS)
assert endpoint.start()
print("ready", flush=True)
sys.stdin.read()
"""


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def test_half_open_connections_keep_the_descriptors_bounded_and_a_scrape_answered() -> None:
    """300 connections that never send a request: the endpoint holds at most 16 of them,
    for 5 s each, and a real scrape is answered once their time is up."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    server = subprocess.Popen([sys.executable, "-c", _SERVE, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    idle: list[socket.socket] = []
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        before = _descriptors(server.pid)
        started = time.monotonic()
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        most, connected = before, time.monotonic()
        while time.monotonic() - connected < 2:  # the last ones are still in their 5 s
            most = max(most, _descriptors(server.pid))
            time.sleep(0.05)
        text = wait_for(lambda: _scrape(port), timeout=20, interval=0.2,
                        what="a scrape answered beside the idle connections")
        answered = time.monotonic() - started
        print(f"descriptors {before} idle, at most {most} with 300 half-open connections; "
              f"scrape answered after {answered:.1f}s")
        assert before < most <= before + MAX_CONNECTIONS
        assert text is not None and "mqtt_gateway_in_flight_messages 7.0" in text
        wait_for(lambda: _descriptors(server.pid) <= before, timeout=10,
                 what="every idle connection closed by the endpoint")
    finally:
        for sock in idle:
            sock.close()
        server.kill()
        server.wait(10)


def test_a_request_head_dripped_byte_by_byte_is_cut_off() -> None:
    endpoint = MetricsEndpoint(ListenAddress("127.0.0.1", free_port()), _One(), GATEWAY_METRICS,
                               LATENCY_HISTOGRAM, LATENCY_BUCKETS)
    assert endpoint.start()
    try:
        with socket.create_connection(("127.0.0.1", endpoint.listen.port), timeout=10) as sock:
            started = time.monotonic()
            closed = False
            while not closed and time.monotonic() - started < 15:
                try:
                    sock.sendall(b"G")
                    sock.settimeout(0.5)
                    closed = sock.recv(1) == b""
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
            elapsed = time.monotonic() - started
        assert closed and READ_TIMEOUT <= elapsed < READ_TIMEOUT + 3, elapsed
    finally:
        endpoint.close()


def test_respond_answers_a_scrape_and_refuses_the_rest() -> None:
    def body() -> bytes:
        return b"m 1\n"
    assert respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", body).startswith(
        b"HTTP/1.1 200 OK\r\n")
    assert respond(b"GET /metrics HTTP/1.1\r\n\r\n", body).endswith(b"\r\n\r\nm 1\n")
    assert respond(b"HEAD / HTTP/1.1\r\n\r\n", body).endswith(b"\r\n\r\n")
    assert respond(b"POST / HTTP/1.1\r\n\r\n", body).startswith(b"HTTP/1.1 405")
    assert respond(b"\x16\x03\x01garbage\r\n\r\n", body).startswith(b"HTTP/1.1 400")
