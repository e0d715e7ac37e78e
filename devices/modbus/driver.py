"""The `modbus` driver: polled Modbus RTU slaves on one serial bus, via pymodbus.

Data layout. Modbus RTU frames are `slave address (1 byte) + function code
+ data + CRC-16 (low byte first)`; pymodbus builds and checks them. Each
configured register names its slave, its table (function code) and start
address (0-based, as on the wire; a manual's "40001" is holding address 0):

| table | function | read as |
|---|---|---|
| `holding` | 0x03 read holding registers | int16/uint16/int32/uint32/float32 |
| `input` | 0x04 read input registers | same |
| `coil` | 0x01 read coils | bool |
| `discrete` | 0x02 read discrete inputs | bool |

The words become values by `devices.modbus.decoding` (type, word order,
scale, offset), when to poll what by `devices.modbus.schedule` (an interval
per register, backoff per silent slave); this module is the config and the
bus loop. Each answered poll emits a partial record holding that register's
field. Rejects: `modbus_no_response` (a poll unanswered after the retries;
its slave then backs off without delaying the others), `modbus_exception`
(the slave answered with a Modbus exception, e.g. illegal address),
`modbus_bad_response`, `modbus_bad_value`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from devices.base import DeviceState, DriverRun, Record, RecordSink, Rejected
from devices.modbus.decoding import NUMBER_TYPES, WORD_ORDERS, Decoding, decode_bits, decode_registers
from devices.modbus.schedule import PollSchedule
from devices.serial.port import read_baudrate, read_port
from gateway.config.reader import MapReader, describe
from gateway.core.backoff import Backoff
from gateway.core.extras import MODBUS

log = logging.getLogger("devices.modbus")

NO_RESPONSE = "modbus_no_response"
MODBUS_EXCEPTION = "modbus_exception"
TABLES = ("holding", "input", "coil", "discrete")
PARITIES = {"none": "N", "even": "E", "odd": "O"}
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


@dataclass(frozen=True)
class Register:
    """One polled value: where it lives and how to read it."""

    field: str
    slave: int
    table: str
    address: int
    decoding: Decoding
    interval: float

    @property
    def where(self) -> str:
        """`slave 2 holding 100` for logs and reject details."""
        return f"slave {self.slave} {self.table} {self.address}"


@dataclass(frozen=True)
class ModbusOptions:
    """The bus settings and the registers polled on it."""

    port: str
    registers: tuple[Register, ...]
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout: float = 1.0
    retries: int = 1
    backoff_max: float = 60.0


def read_options(reader: MapReader) -> ModbusOptions | None:
    """Read the modbus driver's keys (see the README's driver table).

    Args:
        reader: The device's mapping; problems are recorded on it.

    Returns:
        The options, or None when any of these keys had a problem.
    """
    before = len(reader.problems)
    port = read_port(reader)
    baudrate = read_baudrate(reader, _BAUDRATES)
    parity = reader.choice("parity", tuple(PARITIES), default="none")
    stopbits = reader.integer("stopbits", default=1, minimum=1, maximum=2)
    timeout = reader.duration("timeout", default=1.0, minimum=0.01, maximum=10.0)
    retries = reader.integer("retries", default=1, minimum=0, maximum=5)
    backoff_max = reader.duration("backoff_max", default=60.0, minimum=1.0, maximum=3600.0)
    default_slave = reader.integer("slave", default=1, minimum=1, maximum=247)
    default_interval = reader.duration("interval", default=10.0, minimum=0.05, maximum=86400.0)
    registers = _read_registers(reader, default_slave or 1, default_interval)
    if len(reader.problems) > before or port is None or baudrate is None or stopbits is None \
            or retries is None or parity is None:
        return None
    return ModbusOptions(port, registers, baudrate, PARITIES[parity], stopbits, timeout, retries,
                         backoff_max)


def _read_registers(reader: MapReader, slave: int, interval: float) -> tuple[Register, ...]:
    registers: list[Register] = []
    fields: dict[str, int] = {}
    entries = list(reader.items("registers", required=True))
    raw = reader.raw("registers")
    if raw is not None and isinstance(raw.value, list) and not raw.value:
        reader.problem("registers", "at least one register", "an empty list")
    for path, located in entries:
        child = reader.child(path, located)
        if child is None:
            continue
        register = _read_register(child, slave, interval, fields)
        child.finish()
        if register is not None:
            registers.append(register)
    return tuple(registers)


def _read_register(reader: MapReader, slave: int, interval: float, fields: dict[str, int]
                   ) -> Register | None:
    before = len(reader.problems)
    field = reader.string("field", required=True, pattern=_FIELD,
                          expected="a field name such as voltage_v")
    located = reader.raw("field")
    if field is not None and located is not None:
        if field in fields:
            reader.problem("field", "a field name used once per device", describe(field),
                           f"already used at line {fields[field]}")
            field = None
        else:
            fields[field] = located.line
    address_of_slave = reader.integer("slave", default=slave, minimum=1, maximum=247)
    table = reader.choice("table", TABLES, default="holding")
    address = reader.integer("address", required=True, minimum=0, maximum=65535)
    bits = table in ("coil", "discrete")
    kind = reader.choice("type", ("bool",) if bits else NUMBER_TYPES,
                         default="bool" if bits else "uint16")
    word_order = reader.choice("word_order", WORD_ORDERS, default="big")
    scale = _number(reader, "scale", 1.0)
    offset = _number(reader, "offset", 0.0)
    if bits:
        for key in ("word_order", "scale", "offset"):
            if reader.has(key):
                reader.problem(key, f"no '{key}' for a {table} (it reads true/false)", f"'{key}' given")
    own_interval = reader.duration("interval", default=interval, minimum=0.05, maximum=86400.0)
    if len(reader.problems) > before or field is None or address is None or kind is None \
            or table is None or address_of_slave is None or word_order is None:
        return None
    return Register(field, address_of_slave, table, address,
                    Decoding(kind, word_order, scale, offset), own_interval)


def _number(reader: MapReader, key: str, default: float) -> float:
    located = reader.raw(key)
    if located is None or located.value is None:
        return default
    value = located.value
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        reader.problem(key, "a finite number such as 0.1", describe(value))
        return default
    return float(value)


def offered_fields(options: ModbusOptions) -> frozenset[str]:
    """The registers' fields."""
    return frozenset(register.field for register in options.registers)


def start(device_id: str, options: ModbusOptions) -> DriverRun:
    """Prepare the poller of one Modbus RTU bus.

    Args:
        device_id: The device's id (the sink knows it; kept for the table's signature).
        options: The device's validated options.

    Returns:
        A coroutine function that polls until cancelled.
    """

    async def run(sink: RecordSink) -> None:
        await poll_bus(options, sink, device_id=device_id)

    return run


async def poll_bus(options: ModbusOptions, sink: RecordSink,
                   schedule: PollSchedule | None = None, *, device_id: str = "modbus") -> None:
    """Connect to the bus, poll on schedule, reconnect after losing the port; until cancelled.

    Args:
        options: The bus and its registers.
        sink: Where records and rejects go.
        schedule: The schedule to use (tests pass one to inspect slave health).
        device_id: The device's id, for log lines.
    """
    try:
        from pymodbus.client import AsyncModbusSerialClient  # noqa: PLC0415 - loaded only when used
    except ImportError as exc:
        raise MODBUS.error("driver modbus", exc) from exc

    # pymodbus logs an ERROR line for every unanswered request; this driver
    # counts each one (modbus_no_response) and logs once per silent slave.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    loop = asyncio.get_running_loop()
    if schedule is None:
        schedule = PollSchedule([(r.slave, r.interval) for r in options.registers], loop.time(),
                                backoff_max=options.backoff_max)
    reconnect = Backoff(base=0.5, cap=30.0)
    state = DeviceState(sink)
    while True:
        client = AsyncModbusSerialClient(
            options.port, baudrate=options.baudrate, parity=options.parity,
            stopbits=options.stopbits, bytesize=8, timeout=options.timeout,
            retries=options.retries, reconnect_delay=0, name=f"modbus {options.port}")
        try:
            connected = await client.connect()
            if not connected:
                state.report(False, f"cannot open {options.port}")
                await asyncio.sleep(reconnect.next_delay())
                continue
            state.report(True, f"opened {options.port} at {options.baudrate} baud")
            reconnect.reset()
            why = await _poll_connected(client, options, schedule, sink, loop, device_id)
            state.report(False, f"lost {options.port}: {why}")
        finally:
            client.close()
        await asyncio.sleep(reconnect.next_delay())


async def _poll_connected(client: Any, options: ModbusOptions, schedule: PollSchedule,
                          sink: RecordSink, loop: asyncio.AbstractEventLoop, device_id: str) -> str:
    """Poll until the port fails; return why it failed."""
    from pymodbus.exceptions import ConnectionException, ModbusIOException  # noqa: PLC0415

    while True:
        when, index = schedule.next_poll()
        await asyncio.sleep(max(0.0, when - loop.time()))
        register = options.registers[index]
        try:
            response = await _request(client, register)
        except ConnectionException as exc:
            return str(exc) or "connection lost"
        except ModbusIOException as exc:
            if not client.connected:
                return str(exc) or "port closed"
            _unanswered(schedule, index, register, loop.time(), sink, device_id)
            continue
        except OSError as exc:
            return str(exc)
        if schedule.answered(index, loop.time()):
            log.info("device=%s slave=%d answering again on %s after %d unanswered polls in all",
                     device_id, register.slave, options.port,
                     schedule.slaves[register.slave].failed_polls)
        if response.isError():
            code = getattr(response, "exception_code", "?")
            sink.rejected(MODBUS_EXCEPTION, f"{register.where}: Modbus exception code {code}")
            continue
        value = (decode_bits(response.bits) if register.decoding.type == "bool"
                 else decode_registers(response.registers, register.decoding))
        if isinstance(value, Rejected):
            sink.rejected(value.reason, f"{register.where} ({register.field}): {value.detail}")
            continue
        sink.record(Record(ts=time.time(), fields={register.field: value}, partial=True))


def _unanswered(schedule: PollSchedule, index: int, register: Register, now: float,
                sink: RecordSink, device_id: str) -> None:
    first = schedule.unanswered(index, now)
    slave = schedule.slaves[register.slave]
    sink.rejected(NO_RESPONSE, f"{register.where}: no answer")
    if first:
        log.warning("device=%s slave=%d not answering (%s, field %s); its registers back off "
                    "up to backoff_max, other slaves keep their schedule", device_id,
                    register.slave, register.where, register.field)
    elif slave.silent_since % 10 == 0:
        log.debug("device=%s slave=%d still silent after %d polls", device_id, register.slave,
                  slave.silent_since)


async def _request(client: Any, register: Register) -> Any:
    count = register.decoding.words
    if register.table == "holding":
        return await client.read_holding_registers(register.address, count=count,
                                                   device_id=register.slave)
    if register.table == "input":
        return await client.read_input_registers(register.address, count=count,
                                                 device_id=register.slave)
    if register.table == "coil":
        return await client.read_coils(register.address, count=1, device_id=register.slave)
    return await client.read_discrete_inputs(register.address, count=1, device_id=register.slave)
