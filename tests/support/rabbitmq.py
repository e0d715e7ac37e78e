"""The MQTT plugin of the machine's RabbitMQ, on a free loopback port for one test.

The node itself is not ours: nothing here starts, stops or reconfigures it beyond
enabling `rabbitmq_mqtt` with its listener set at run time (no config file is
written) and disabling the plugin again afterwards, so the AMQP listener and the
node's next boot are as they were.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support.ports import free_port, port_open
from tests.support.waiting import wait_for

ENABLED_PLUGINS = Path("/etc/rabbitmq/enabled_plugins")  # written by rabbitmq-plugins


class RabbitUnavailable(Exception):
    """The machine's RabbitMQ cannot offer an MQTT listener; the message says why."""


def _run(*args: str, timeout: float = 120.0) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RabbitUnavailable(f"{args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise RabbitUnavailable(f"{' '.join(args)} exited {done.returncode}: "
                                f"{(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout


class RabbitMqtt:
    """rabbitmq_mqtt listening on 127.0.0.1:port."""

    proc: subprocess.Popen[bytes] | None = None  # the node is not a process of ours
    kills = 0

    def __init__(self) -> None:
        self.port = free_port()
        self.enabled_here = False
        self._had_plugins_file = ENABLED_PLUGINS.exists()

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:port"""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Enable the plugin on a free port (RabbitUnavailable when it cannot be)."""
        for tool in ("rabbitmqctl", "rabbitmq-plugins"):
            if shutil.which(tool) is None:
                raise RabbitUnavailable(f"{tool} is not installed")
        _run("rabbitmqctl", "status", timeout=30)
        listed = _run("rabbitmq-plugins", "list", "-e", "rabbitmq_mqtt", timeout=60)
        if re.search(r"^\[[Ee]\*?\] rabbitmq_mqtt ", listed, re.MULTILINE):
            raise RabbitUnavailable("rabbitmq_mqtt is already enabled (by someone else): "
                                    "its listener is not ours to move")
        _run("rabbitmqctl", "eval", "application:load(rabbitmq_mqtt), application:set_env("
             f'rabbitmq_mqtt, tcp_listeners, [{{"127.0.0.1", {self.port}}}]).', timeout=30)
        _run("rabbitmq-plugins", "enable", "rabbitmq_mqtt")
        self.enabled_here = True
        wait_for(lambda: port_open(self.port), timeout=30,
                 what=f"RabbitMQ's MQTT listener on port {self.port}")

    def stop(self) -> None:
        """Disable the plugin again (when this enabled it)."""
        if self.enabled_here:
            self.enabled_here = False
            _run("rabbitmq-plugins", "disable", "rabbitmq_mqtt")
            if not self._had_plugins_file and ENABLED_PLUGINS.read_text().strip() == "[].":
                ENABLED_PLUGINS.unlink()  # as it was: no file, no plugins

    def kill(self) -> None:
        """Not offered: the node is the machine's."""
        raise RabbitUnavailable("the machine's RabbitMQ is not killed by tests")
