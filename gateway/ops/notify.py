"""sd_notify without a dependency: datagrams to the socket systemd names in $NOTIFY_SOCKET.

systemd passes the path of an AF_UNIX datagram socket; a leading '@' names
a socket in the abstract namespace. Each message is one datagram of
newline-separated `KEY=value` assignments (READY=1, STATUS=..., STOPPING=1,
WATCHDOG=1). Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("gateway.notify")


class Notifier:
    """Sends state changes to the service manager, if there is one."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failed_logged = False
        self.sent = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for $NOTIFY_SOCKET (one that does nothing when it is unset)."""
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens."""
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one datagram of `KEY=value` lines; False when it could not be sent."""
        if self.address is None:
            return False
        text = "\n".join(f"{key}={value}" for key, value in fields.items())
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(text.encode("utf-8"), target)
        except OSError as exc:
            if not self._failed_logged:  # once: a missing socket does not get better by retrying
                self._failed_logged = True
                log.warning("cannot notify the service manager at %s: %s", self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> None:
        """READY=1 with a status line."""
        self.send(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        """A new status line for `systemctl status`."""
        self.send(STATUS=status)

    def stopping(self, status: str) -> None:
        """STOPPING=1: shutdown has begun."""
        self.send(STOPPING="1", STATUS=status)

    def watchdog(self) -> None:
        """WATCHDOG=1: the service is alive and making progress."""
        self.send(WATCHDOG="1")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when off.

    $WATCHDOG_PID, when set, must be this process (systemd sets it for the main process).
    """
    env = os.environ if env is None else env
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None
