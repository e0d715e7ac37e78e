"""The HTTP server behind the metrics endpoint: prometheus_client's exposition, bounded.

prometheus_client's own server gives every connection a thread and a file
descriptor for as long as the client keeps it open, with no timeout: a few
thousand half-open connections use up the descriptors the service needs for
its broker and its store. This one serves at most MAX_CONNECTIONS at once
(a connection beyond them is closed as soon as it is accepted), gives each
READ_TIMEOUT seconds in all to send its request head of at most
MAX_HEAD_BYTES, answers `GET /metrics` (any path, as prometheus_client does)
with `generate_latest`, and closes the connection after each response.

`respond` is the pure part: a request head in, a whole HTTP response out.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("gateway.metrics")

MAX_CONNECTIONS = 16
READ_TIMEOUT = 5.0  # seconds for the whole request head, and for each write of the answer
MAX_HEAD_BYTES = 8192


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
              send_body: bool = True) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + (body if send_body else b"")


def respond(head: bytes, exposition: Callable[[], bytes]) -> bytes:
    """The answer to one request head (the bytes up to its blank line)."""
    line = head.split(b"\n", 1)[0].strip().split()
    if len(line) != 3 or not line[2].startswith(b"HTTP/"):
        return _response("400 Bad Request", b"bad request line\n")
    method = line[0]
    if method not in (b"GET", b"HEAD"):
        return _response("405 Method Not Allowed", b"only GET\n")
    if line[1].split(b"?", 1)[0] == b"/favicon.ico":
        return _response("404 Not Found", b"not found\n")
    return _response("200 OK", exposition(), CONTENT_TYPE_LATEST, send_body=method == b"GET")


def _read_head(sock: socket.socket, deadline: float) -> bytes | None:
    """The request head, or None when it does not come whole, in time and within bounds."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(data) > MAX_HEAD_BYTES:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


class _Handler(socketserver.BaseRequestHandler):
    server: ScrapeServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        head = _read_head(sock, time.monotonic() + self.server.read_timeout)
        if head is None:
            return
        answer = respond(head, self.server.exposition)
        sock.settimeout(self.server.read_timeout)
        try:
            sock.sendall(answer)
        except OSError:
            return


class ScrapeServer(socketserver.ThreadingTCPServer):
    """A threading TCP server for scrapes, with a bounded number of connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, host: str, port: int, registry: CollectorRegistry, *,
                 max_connections: int = MAX_CONNECTIONS,
                 read_timeout: float = READ_TIMEOUT) -> None:
        self.registry = registry
        self.read_timeout = read_timeout
        self.max_connections = max_connections
        self.refused = 0  # connections closed at once because all slots were taken
        self._slots = threading.BoundedSemaphore(max_connections)
        self.address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        super().__init__((host, port), _Handler)

    def exposition(self) -> bytes:
        """The registry's metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket],
                        client_address: object) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            log.log(logging.WARNING if self.refused == 1 else logging.DEBUG,
                    "metrics: %d connections are open, the most served at once; closing "
                    "further ones at once (%d so far)", self.max_connections, self.refused)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket | tuple[bytes, socket.socket],
                               client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def serve_in_thread(self) -> threading.Thread:
        """Serve until `shutdown()`, in a daemon thread."""
        thread = threading.Thread(target=self.serve_forever, name="metrics", daemon=True)
        thread.start()
        return thread
