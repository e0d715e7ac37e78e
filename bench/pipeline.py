"""One run of the whole delivery path: pty sensor -> gateway -> mosquitto -> consumer.

`Pipeline` starts a fresh broker, the consumer (subscribed), the feeder and
the gateway (its serial device up), every part a real process; the
benchmarks drive the feeder and read the gateway's /proc figures and the
consumer's `readings`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    Feeder,
    broker,
    consumer_config,
    gateway_config,
    service,
    start,
    stop,
)
from tests.support.broker import Mosquitto
from tests.support.procs import Service


@dataclass
class Pipeline:
    """The running parts of one benchmark run."""

    where: Path
    broker: Mosquitto
    consumer: Service
    gateway: Service
    feeder: Feeder
    db: Path

    @property
    def gateway_pid(self) -> int:
        """The gateway's process id."""
        assert self.gateway.proc is not None
        return self.gateway.proc.pid

    @property
    def consumer_pid(self) -> int:
        """The consumer's process id."""
        assert self.consumer.proc is not None
        return self.consumer.proc.pid


@contextmanager
def pipeline(where: Path, streams: dict[str, str], *, store: str = "", top: str = "",
             devices: str | None = None, consumer_extra: str = "",
             start_gateway: bool = True) -> Iterator[Pipeline]:
    """Start every part; stop them all (gateway first) at the end."""
    with ExitStack() as stack:
        b = stack.enter_context(broker(where / "broker"))
        db = where / "consumer.sqlite"
        consumer = service("consume", consumer_config(where, b.port, db, consumer_extra), where,
                           "consumer")
        start(consumer, r"subscribed to")
        stack.callback(stop, consumer)
        feeder = Feeder(where / "ttyBENCH")
        stack.callback(feeder.close)
        gateway = service("run", gateway_config(where, b.port, feeder.link, streams, store=store,
                                                top=top, devices=devices), where, "gateway")
        if start_gateway:
            start(gateway, r"connected to broker", timeout=120)
        stack.callback(lambda: stop(gateway) if gateway.proc is not None else None)
        yield Pipeline(where, b, consumer, gateway, feeder, db)
