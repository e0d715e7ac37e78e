"""Real nats-server processes with their MQTT listener on free loopback ports, started and
killed by pid: one server, or a cluster of servers joined by routes."""

from __future__ import annotations

from pathlib import Path

from tests.support.ports import free_port
from tests.support.process import BrokerProcess, find_binary
from tests.support.waiting import wait_for


def nats_binary() -> str:
    """Path of the nats-server binary."""
    return find_binary("nats-server", "nats-server")


class NatsServer(BrokerProcess):
    """One nats-server with JetStream and an MQTT listener, its own store dir and log."""

    start_timeout = 20.0

    def __init__(self, workdir: Path, name: str = "n1") -> None:
        super().__init__()
        self.workdir = workdir
        self.name = name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()  # the MQTT listener
        self.client_port = free_port()
        self.cluster_port = free_port()
        self.log_path = workdir / f"{name}.log"
        self.conf_path = workdir / f"{name}.conf"
        self.routes: list[int] = []  # the cluster ports of the other nodes

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:port (the MQTT listener)"""
        return f"mqtt://127.0.0.1:{self.port}"

    def _config(self) -> str:
        text = (f'server_name: "{self.name}"\n'
                f"listen: 127.0.0.1:{self.client_port}\n"
                f'jetstream {{ store_dir: "{self.workdir / (self.name + "-js")}" }}\n'
                f"mqtt {{ host: 127.0.0.1, port: {self.port}{self._replicas()} }}\n")
        if self.routes:
            routes = ", ".join(f"nats://127.0.0.1:{p}" for p in self.routes)
            text += (f"cluster {{ name: testc, listen: 127.0.0.1:{self.cluster_port}, "
                     f"routes: [{routes}] }}\n")
        return text

    def _replicas(self) -> str:
        # In a cluster, the MQTT streams on every node: with fewer replicas than nodes
        # (NATS picks as many as it sees routed when the first client comes), losing one
        # replica of two stops the sessions stream until that node is back.
        size = len(self.routes) + 1
        return f", stream_replicas: {size}, consumer_replicas: {size}" if self.routes else ""

    def start(self) -> None:
        """Start the server and wait until its MQTT listener accepts connections."""
        self.conf_path.write_text(self._config())
        with self.log_path.open("ab") as out:
            self._popen([nats_binary(), "-c", str(self.conf_path)], out)


def nats_cluster(workdir: Path, size: int = 3) -> list[NatsServer]:
    """`size` servers routed to each other (not started)."""
    nodes = [NatsServer(workdir, f"n{i + 1}") for i in range(size)]
    for node in nodes:
        node.routes = [other.cluster_port for other in nodes if other is not node]
    return nodes


def wait_cluster_ready(nodes: list[NatsServer], timeout: float = 30.0) -> None:
    """Wait until every node knows the JetStream metadata leader (clients connecting
    before that are refused or time out)."""

    def ready() -> bool:
        return all("metadata leader" in node.log_path.read_text(errors="replace")
                   for node in nodes)

    wait_for(ready, timeout=timeout, what="the NATS cluster's JetStream metadata leader")
