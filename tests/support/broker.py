"""A real mosquitto broker on a free loopback port, started and killed by pid."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.support.ports import free_port, port_open
from tests.support.waiting import wait_for

# Persistence as tight as mosquitto allows: save the in-memory database after
# every change (autosave_on_changes with an interval of 1 change). A SIGKILL
# can still lose what arrived between a save and the kill.
DURABLE = """
persistence true
autosave_on_changes true
autosave_interval 1
"""


def mosquitto_binary() -> str:
    """Path of the mosquitto broker binary."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if found is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    return found


class Mosquitto:
    """One mosquitto process with its own config, data dir and log."""

    def __init__(self, workdir: Path, *, persistent: bool = True, extra: str = "") -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = workdir / "mosquitto.log"
        self.conf_path = workdir / "mosquitto.conf"
        self.conf_path.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "user root\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "max_queued_messages 1000000\n"
            "queue_qos0_messages false\n"
            "max_inflight_messages 20\n"
            + (DURABLE if persistent else "persistence false\n")
            + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:port"""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf_path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None,  # type: ignore[union-attr]
                 timeout=10, what=f"mosquitto on port {self.port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL the broker: whatever it had not saved is gone."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        """SIGTERM the broker and wait for it (it saves its state)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
