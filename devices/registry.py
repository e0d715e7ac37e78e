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

from devices import bme280, gpio, modbus, nmea, serial_port, simulator, w1
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
        DriverSpec(
            name="gpio",
            summary="one GPIO input line (gpiod): debounced edges, polled level or a pulse counter",
            read_options=gpio.read_options,
            offered_fields=gpio.offered_fields,
            start=gpio.start,
        ),
        DriverSpec(
            name="modbus",
            summary="Modbus RTU slaves on a serial bus (pymodbus): polled registers and coils",
            read_options=modbus.read_options,
            offered_fields=modbus.offered_fields,
            start=modbus.start,
        ),
        DriverSpec(
            name="nmea",
            summary="NMEA 0183 GPS receiver on a serial port: position, speed, fix, satellites",
            read_options=nmea.read_options,
            offered_fields=nmea.offered_fields,
            start=nmea.start,
        ),
        DriverSpec(
            name="w1",
            summary="DS18B20 1-Wire temperature probes through the kernel's w1_slave files",
            read_options=w1.read_options,
            offered_fields=w1.offered_fields,
            start=w1.start,
        ),
        DriverSpec(
            name="bme280",
            summary="Bosch BME280 temperature/pressure/humidity sensor on I2C (smbus2)",
            read_options=bme280.read_options,
            offered_fields=bme280.offered_fields,
            start=bme280.start,
        ),
    )
}
