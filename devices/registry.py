"""The one table of drivers the YAML device map can name.

Each entry says how to read the driver's own config keys (reporting problems
through the shared `MapReader`), which record fields it can offer (so `check`
can reject a stream that names a field the driver never produces), and how
to start it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices import serial_port, simulator
from devices.base import DriverRun
from gateway.config_reader import MapReader


@dataclass(frozen=True)
class DriverSpec:
    """How the gateway configures and starts one kind of driver."""

    name: str
    summary: str
    read_options: Callable[[MapReader], Any]
    offered_fields: Callable[[Any], frozenset[str] | None]
    start: Callable[[str, Any], DriverRun]


DRIVERS: dict[str, DriverSpec] = {
    spec.name: spec
    for spec in (
        DriverSpec(
            name="serial",
            summary="line-oriented sensor on a serial port (json, csv or key=value lines)",
            read_options=serial_port.read_options,
            offered_fields=serial_port.offered_fields,
            start=serial_port.start,
        ),
        DriverSpec(
            name="simulator",
            summary="simulated climate sensor: random-walk temperature and humidity, "
            "a counter and a rare alarm",
            read_options=simulator.read_options,
            offered_fields=simulator.offered_fields,
            start=simulator.start,
        ),
    )
}
