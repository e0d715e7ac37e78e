"""A real mosquitto broker on a free loopback port, started and killed by pid."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.ports import free_port
from tests.support.process import BrokerProcess, find_binary

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
    return find_binary("mosquitto", "mosquitto")


class Mosquitto(BrokerProcess):
    """One mosquitto process with its own config, data dir and log."""

    def __init__(self, workdir: Path, *, persistent: bool = True, extra: str = "") -> None:
        super().__init__()
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

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:port"""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self._popen([mosquitto_binary(), "-c", str(self.conf_path)], subprocess.DEVNULL)
