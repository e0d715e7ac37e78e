"""The one table of drivers the YAML device map can name.

Each entry says how to read the driver's own config keys (reporting problems
through the shared `MapReader`), which record fields it can offer (so `check`
can reject a stream that names a field the driver never produces), and how
to start it, and which extra of the distribution brings its library, if any
(`check`, `run` and a reload name the extra when the library is missing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from devices import nmea, simulator, w1
from devices.base import DriverRun
from devices.bme280 import driver as bme280
from devices.gpio import driver as gpio
from devices.modbus import driver as modbus
from devices.serial import port as serial_port
from gateway.config.reader import MapReader
from gateway.core.extras import GPIO, GPS, I2C, MODBUS, Extra


@dataclass(frozen=True)
class DriverSpec:
    """How the gateway configures and starts one kind of driver."""

    name: str
    summary: str
    read_options: Callable[[MapReader], Any]
    offered_fields: Callable[[Any], frozenset[str] | None]
    start: Callable[[str, Any], DriverRun]
    extra: Extra | None = None

    @classmethod
    def of(cls, name: str, summary: str, module: ModuleType, extra: Extra | None = None
           ) -> DriverSpec:
        """The entry of a driver module (its `read_options`, `offered_fields`, `start`)."""
        return cls(name, summary, module.read_options, module.offered_fields, module.start, extra)


DRIVERS: dict[str, DriverSpec] = {
    spec.name: spec
    for spec in (
        DriverSpec.of("serial", "line-oriented sensor on a serial port (json, csv or key=value "
                      "lines)", serial_port),
        DriverSpec.of("simulator", "simulated climate sensor: random-walk temperature and "
                      "humidity, a counter and a rare alarm", simulator),
        DriverSpec.of("gpio", "one GPIO input line (gpiod): debounced edges, polled level or a "
                      "pulse counter", gpio, GPIO),
        DriverSpec.of("modbus", "Modbus RTU slaves on a serial bus (pymodbus): polled registers "
                      "and coils", modbus, MODBUS),
        DriverSpec.of("nmea", "NMEA 0183 GPS receiver on a serial port: position, speed, fix, "
                      "satellites", nmea, GPS),
        DriverSpec.of("w1", "DS18B20 1-Wire temperature probes through the kernel's w1_slave "
                      "files", w1),
        DriverSpec.of("bme280", "Bosch BME280 temperature/pressure/humidity sensor on I2C "
                      "(smbus2)", bme280, I2C),
    )
}
