"""sd_notify datagrams on real AF_UNIX sockets, by path and in the abstract namespace."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gateway.ops.notify import Notifier


def receive(sock: socket.socket) -> dict[str, str]:
    """One datagram as KEY=value fields."""
    sock.settimeout(5)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_notifier_sends_to_a_socket_path(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        notifier.ready("running: 2 devices")
        notifier.watchdog()
        notifier.stopping("stopping")
        assert receive(sock) == {"READY": "1", "STATUS": "running: 2 devices"}
        assert receive(sock) == {"WATCHDOG": "1"}
        assert receive(sock) == {"STOPPING": "1", "STATUS": "stopping"}
        notifier.close()


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"mqtt-gateway-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        notifier.watchdog()
        assert receive(sock) == {"WATCHDOG": "1"}
        notifier.close()


def test_without_notify_socket_nothing_is_sent_and_a_dead_socket_is_no_crash(
        tmp_path: Path) -> None:
    assert not Notifier.from_env({}).send(READY="1")
    gone = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert not gone.send(READY="1")
    assert not gone.send(WATCHDOG="1")
    assert gone.sent == 0
