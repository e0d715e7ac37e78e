"""The `bme280` driver: a Bosch BME280 on an I2C bus, through smbus2.

Data layout (BST-BME280-DS002, section 5): chip id 0x60 at register 0xD0;
calibration at 0x88..0xA1 and 0xE1..0xE7; `ctrl_hum` 0xF2 (humidity
oversampling, takes effect at the next write of `ctrl_meas`), `status` 0xF3
(bit 3 `measuring`), `ctrl_meas` 0xF4 (temperature and pressure
oversampling, mode: 0b01 forced); the measurement at 0xF7..0xFE. The
register decoding and the compensation formulas are the pure functions of
`devices.bme280.compensation`.

Each poll triggers one forced measurement (oversampling x1 for all three,
the sensor sleeps in between, as the datasheet recommends for weather
monitoring), waits until `measuring` clears, reads the eight data bytes in
one burst and emits `temperature_c`, `pressure_hpa` and `humidity_pct`.
A bus error (no ACK, device unplugged) marks the device down; the
calibration is read again when it answers. Rejects: `bme280_skipped`,
`bme280_out_of_range`, `bme280_bad_calibration`, `bme280_timeout`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from devices.base import DeviceState, DriverRun, Record, RecordSink, Rejected
from devices.bme280 import compensation as comp
from devices.tick_schedule import TickSchedule
from gateway.config.reader import MapReader, describe
from gateway.core.backoff import Backoff
from gateway.core.extras import I2C

CHIP_ID = 0x60
REG_CHIP_ID = 0xD0
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
STATUS_MEASURING = 0x08
OVERSAMPLING_X1 = 0b001
MODE_FORCED = 0b01
# Datasheet section 9.1: at x1 oversampling a measurement takes at most 9.3 ms.
MEASURE_WAIT = 0.010
MEASURE_TRIES = 20
BME280_TIMEOUT = "bme280_timeout"
FIELDS = frozenset({"temperature_c", "pressure_hpa", "humidity_pct"})


class SMBusLike(Protocol):
    """The part of `smbus2.SMBus` the driver uses (a fake bus in tests)."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        """One register."""

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        """`length` registers from `register` on."""

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        """Write one register."""

    def close(self) -> None:
        """Release the bus."""


@dataclass(frozen=True)
class Bme280Options:
    """Which bus and address, and how often to measure."""

    bus: int = 1
    address: int = 0x76
    interval: float = 10.0


def read_options(reader: MapReader) -> Bme280Options | None:
    """Read the bme280 driver's keys: `bus`, `address` (0x76 or 0x77), `interval`.

    Args:
        reader: The device's mapping; problems are recorded on it.

    Returns:
        The options, or None when any of these keys had a problem.
    """
    before = len(reader.problems)
    bus = reader.integer("bus", default=1, minimum=0, maximum=255)
    address = reader.integer("address", default=0x76)
    if address is not None and address not in (0x76, 0x77):
        found = reader.raw("address")
        reader.problem("address", "0x76 or 0x77 (118 or 119), the BME280's two addresses",
                       describe(found.value if found is not None else address))
    interval = reader.duration("interval", default=10.0, minimum=0.1, maximum=86400.0)
    if len(reader.problems) > before or bus is None or address is None:
        return None
    return Bme280Options(bus, address, interval)


def offered_fields(options: Bme280Options) -> frozenset[str]:
    """`temperature_c`, `pressure_hpa`, `humidity_pct`."""
    return FIELDS


class BusError(Exception):
    """The sensor did not answer as a BME280 should; the message says how."""


class Bme280:
    """One sensor on an open bus: calibration, forced measurement, compensation."""

    def __init__(self, bus: SMBusLike, address: int, pause: Callable[[float], None] = time.sleep
                 ) -> None:
        """Bind to the sensor; nothing is read yet.

        Args:
            bus: An open SMBus (or a fake one).
            address: The sensor's I2C address.
            pause: How to wait for a measurement (blocking; the driver calls
                this in a worker thread).
        """
        self.bus = bus
        self.address = address
        self.pause = pause
        self.calibration: comp.Calibration | None = None

    def setup(self) -> None:
        """Check the chip id and read the calibration.

        Raises:
            BusError: Wrong chip id or unusable calibration.
            OSError: The bus failed.
        """
        chip = self.bus.read_byte_data(self.address, REG_CHIP_ID)
        if chip != CHIP_ID:
            raise BusError(f"chip id {chip:#04x} at {self.address:#04x} is not a BME280's 0x60")
        block0 = bytes(self.bus.read_i2c_block_data(self.address, comp.CALIB_00, 26))
        block1 = bytes(self.bus.read_i2c_block_data(self.address, comp.CALIB_26, 7))
        calibration = comp.parse_calibration(block0, block1)
        if isinstance(calibration, Rejected):
            raise BusError(calibration.detail)
        self.calibration = calibration

    def measure(self) -> dict[str, float] | Rejected:
        """Take one forced measurement.

        Returns:
            The compensated fields, or a `Rejected`.

        Raises:
            OSError: The bus failed.
        """
        if self.calibration is None:
            self.setup()
        assert self.calibration is not None
        self.bus.write_byte_data(self.address, REG_CTRL_HUM, OVERSAMPLING_X1)
        self.bus.write_byte_data(self.address, REG_CTRL_MEAS,
                                 OVERSAMPLING_X1 << 5 | OVERSAMPLING_X1 << 2 | MODE_FORCED)
        for _ in range(MEASURE_TRIES):
            self.pause(MEASURE_WAIT)
            if not self.bus.read_byte_data(self.address, REG_STATUS) & STATUS_MEASURING:
                break
        else:
            return Rejected(BME280_TIMEOUT, f"still measuring after {MEASURE_TRIES} checks")
        data = bytes(self.bus.read_i2c_block_data(self.address, comp.DATA, 8))
        raw = comp.decode_raw(data)
        if isinstance(raw, Rejected):
            return raw
        return comp.compensate(self.calibration, raw)


def start(device_id: str, options: Bme280Options) -> DriverRun:
    """Prepare the poller of one BME280 on `/dev/i2c-<bus>`.

    Args:
        device_id: The device's id (the sink knows it; kept for the table's signature).
        options: The device's validated options.

    Returns:
        A coroutine function that measures until cancelled.
    """

    def open_bus() -> SMBusLike:
        try:
            import smbus2  # noqa: PLC0415 - only a gateway with a BME280 needs it
        except ImportError as exc:
            raise I2C.error("driver bme280", exc) from exc

        bus: SMBusLike = smbus2.SMBus(options.bus)
        return bus

    async def run(sink: RecordSink) -> None:
        await poll_forever(options, open_bus, sink)

    return run


async def poll_forever(options: Bme280Options, open_bus: Callable[[], SMBusLike],
                       sink: RecordSink) -> None:
    """Open the bus, measure every interval, reopen after failures, until cancelled."""
    where = f"/dev/i2c-{options.bus} address {options.address:#04x}"
    backoff = Backoff(base=1.0, cap=max(options.interval, 1.0) * 6)
    state = DeviceState(sink)
    loop = asyncio.get_running_loop()
    while True:
        try:
            bus = await asyncio.to_thread(open_bus)
        except OSError as exc:
            state.report(False, f"cannot open {where}: {exc}")
            await asyncio.sleep(backoff.next_delay())
            continue
        sensor = Bme280(bus, options.address)
        schedule = TickSchedule(options.interval, loop.time())
        try:
            while True:
                try:
                    result = await asyncio.to_thread(sensor.measure)
                except (OSError, BusError) as exc:
                    state.report(False, f"{where}: {exc}")
                    break
                if state.report(True, f"BME280 at {where}"):
                    backoff.reset()
                if isinstance(result, Rejected):
                    sink.rejected(result.reason, f"{where}: {result.detail}")
                else:
                    sink.record(Record(ts=time.time(), fields=result))
                await asyncio.sleep(schedule.wait_after_tick(loop.time()))
        finally:
            bus.close()
        await asyncio.sleep(backoff.next_delay())
