"""The modbus driver against a real pymodbus RTU server on the other end of a pty null-modem.

The server (pymodbus' own `ModbusSerialServer`, RTU framer) opens one end of
two bridged ptys, the driver the other; every request and answer is a real
RTU frame with its CRC. The cable can mute a slave address, so that slave
never answers, as a dead device on a multi-drop bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from devices.modbus.decoding import Decoding
from devices.modbus.driver import MODBUS_EXCEPTION, NO_RESPONSE, ModbusOptions, Register, poll_bus
from devices.modbus.schedule import PollSchedule
from tests.support.modbus_server import BAUD, RtuServer
from tests.support.null_modem import NullModem
from tests.support.recording_sink import RecordingSink, running
from tests.support.waiting import wait_for


@pytest.fixture
def bus() -> Iterator[NullModem]:
    cable = NullModem()
    server = RtuServer(cable.b)
    yield cable
    server.stop()
    cable.close()


REGISTERS = (
    Register("voltage_v", 1, "holding", 0, Decoding("float32"), 0.1),
    Register("flow_temp_c", 1, "holding", 10, Decoding("int16", scale=0.5), 0.1),
    Register("pump_on", 1, "coil", 0, Decoding("bool"), 0.1),
    Register("energy_kwh", 2, "input", 5, Decoding("uint32", "little", scale=0.01), 0.1),
    Register("missing", 1, "holding", 500, Decoding("uint16"), 0.5),  # beyond the slave's map
)


def latest(sink: RecordingSink) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for fields in sink.fields:
        merged.update(fields)
    return merged


def count_of(sink: RecordingSink, field: str) -> int:
    return sum(1 for fields in sink.fields if field in fields)


def test_polls_every_type_and_survives_a_silent_slave(bus: NullModem) -> None:
    options = ModbusOptions(port=bus.a, registers=REGISTERS, baudrate=BAUD, timeout=0.2, retries=1,
                            backoff_max=1.0)
    schedule = PollSchedule([(r.slave, r.interval) for r in REGISTERS], 0.0, backoff_max=1.0)
    sink = RecordingSink()

    async def run(s: Any) -> None:
        schedule.due = [asyncio.get_running_loop().time()] * len(REGISTERS)
        await poll_bus(options, s, schedule)

    with running(run, sink):
        wait_for(lambda: {"voltage_v", "flow_temp_c", "pump_on", "energy_kwh"} <= latest(sink).keys(),
                 what="every register read once")
        assert latest(sink) == {"voltage_v": 230.5, "flow_temp_c": -5.0, "pump_on": True,
                                "energy_kwh": 1234.56}
        wait_for(lambda: sink.reject_counts[MODBUS_EXCEPTION] >= 1, what="illegal address answered")

        bus.muted.add(2)
        wait_for(lambda: schedule.slaves[2].silent, what="slave 2 seen silent")
        slave_one_before = count_of(sink, "voltage_v")
        wait_for(lambda: sink.reject_counts[NO_RESPONSE] >= 4, timeout=20,
                 what="four unanswered polls of slave 2")
        slave_one_polls = count_of(sink, "voltage_v") - slave_one_before
        failed = schedule.slaves[2].failed_polls
        # Slave 1 kept being read while slave 2 was silent, and slave 2 was backed
        # off: far fewer attempts than its 10-a-second schedule would make.
        assert slave_one_polls > 2 * failed, (slave_one_polls, failed)

        energy_before = count_of(sink, "energy_kwh")
        bus.muted.clear()
        wait_for(lambda: count_of(sink, "energy_kwh") > energy_before, timeout=20,
                 what="slave 2 read again")
        assert not schedule.slaves[2].silent
    assert all(record.partial for record in sink.snapshot()[0])
    # Each unanswered poll was sent twice (retries: 1) before it was counted.
    assert bus.frames_muted == 2 * sink.reject_counts[NO_RESPONSE]


def test_a_missing_port_is_reported_down_and_read_once_it_appears(tmp_path: Any,
                                                                   bus: NullModem) -> None:
    link = tmp_path / "ttyBUS"
    options = ModbusOptions(port=str(link), registers=REGISTERS[:1], baudrate=BAUD, timeout=0.2)
    sink = RecordingSink()
    with running(lambda s: poll_bus(options, s), sink):
        wait_for(lambda: sink.states, what="a device state")
        link.symlink_to(bus.a)  # the USB adapter is plugged in
        wait_for(lambda: sink.fields, timeout=20, what="a reading through the new port")
    assert sink.states[0] == (False, f"cannot open {link}")
    assert sink.states[1] == (True, f"opened {link} at {BAUD} baud")
    assert sink.fields[0] == {"voltage_v": 230.5}
