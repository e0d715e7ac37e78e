"""A TCP proxy between the gateway and the broker that can stall or cut the link."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

from tests.support.ports import free_port


class TcpProxy:
    """Forwards 127.0.0.1:port to a target port, one thread, bounded buffers.

    `stall()` stops moving bytes in both directions while keeping the
    connections open (a hung link); `resume()` moves them again; `cut()`
    closes every open connection (a dead link); `refuse()` cuts and keeps
    closing new connections until `allow()` (an unreachable broker);
    `slow(bytes_per_second)` paces what it forwards, every connection and both
    directions together, to that rate (a slow link) until `fast()`.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._stalled = threading.Event()
        self._refusing = threading.Event()
        self._cut_requested = threading.Event()
        self._stop = threading.Event()
        self.stalls = 0
        self.cuts = 0
        self.connections = 0
        self.bytes_up = 0  # bytes forwarded from clients to the target
        self._clients: set[socket.socket] = set()
        self.bytes_forwarded = 0  # both directions, MQTT bytes as the TCP streams carry them
        self._rate: float | None = None  # bytes per second while slow
        self.slowdowns = 0
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self._thread.start()

    def stall(self) -> None:
        """Stop forwarding; connections stay open."""
        self.stalls += 1
        self._stalled.set()

    def resume(self) -> None:
        """Forward again."""
        self._stalled.clear()

    def slow(self, bytes_per_second: float) -> None:
        """Forward no faster than `bytes_per_second`, in all."""
        self.slowdowns += 1
        self._rate = bytes_per_second

    def fast(self) -> None:
        """Forward at full speed again."""
        self._rate = None

    def refuse(self) -> None:
        """Cut every connection and close new ones at once (the broker is unreachable)."""
        self._refusing.set()
        self.cut()

    def allow(self) -> None:
        """Accept and forward connections again."""
        self._refusing.clear()

    def cut(self) -> None:
        """Close every connection through the proxy."""
        self.cuts += 1
        self._cut_requested.set()

    def close(self) -> None:
        """Stop the proxy."""
        self._stop.set()
        self._thread.join(5)
        self._close_all()
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._cut_requested.is_set():
                self._cut_requested.clear()
                self._close_all()
            if self._stalled.is_set():
                self._stop.wait(0.02)
                continue
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    self._accept()
                else:
                    self._pump(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._refusing.is_set():
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, None)
        with self._lock:
            self._pairs[client] = upstream
            self._pairs[upstream] = client
            self._clients.add(client)
        self.connections += 1

    def _pump(self, sock: socket.socket) -> None:
        peer = self._pairs.get(sock)
        if peer is None:
            return
        rate = self._rate
        try:
            data = sock.recv(65536 if rate is None else max(64, int(rate / 20)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_pair(sock)
            return
        if sock in self._clients:
            self.bytes_up += len(data)
        try:
            peer.setblocking(True)
            peer.settimeout(2)
            peer.sendall(data)
            self.bytes_forwarded += len(data)
            if rate is not None:
                self._stop.wait(len(data) / rate)  # the one thread waits: every connection is paced
            peer.setblocking(False)
        except OSError:
            self._close_pair(sock)

    def _close_pair(self, sock: socket.socket) -> None:
        with self._lock:
            peer = self._pairs.pop(sock, None)
            if peer is not None:
                self._pairs.pop(peer, None)
            self._clients.discard(sock)
            if peer is not None:
                self._clients.discard(peer)
        for s in (sock, peer):
            if s is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(s)
            s.close()

    def _close_all(self) -> None:
        with self._lock:
            socks = list(self._pairs)
        for sock in socks:
            if sock in self._pairs:
                self._close_pair(sock)
