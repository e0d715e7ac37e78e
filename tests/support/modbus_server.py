"""A real pymodbus RTU server (the slaves of a bus) on its own event loop in a thread.

Slave 1: holding registers 0-1 float32 230.5 (voltage), 10 int16 -10, coil 0
on. Slave 2: input registers 5-6 uint32 123456 in little word order. The
data blocks count from 1 (pymodbus' convention): protocol address 0 is
block address 1. pymodbus 3.x marks these context classes deprecated for
v4; they are the documented way to serve fixed registers in 3.x.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pymodbus import FramerType
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusSerialServer

from devices.modbus.decoding import Decoding, encode_value

BAUD = 115200


def block(values: dict[int, int], size: int = 64) -> ModbusSequentialDataBlock:
    """A data block of `size` words, zero except `values` (protocol address -> word)."""
    words = [0] * size
    for address, value in values.items():
        words[address] = value
    return ModbusSequentialDataBlock(1, words)


def slave_one() -> ModbusDeviceContext:
    """Slave 1: a meter with a float32 voltage, an int16 temperature and a pump coil."""
    volts = encode_value(230.5, Decoding("float32"))
    return ModbusDeviceContext(hr=block({0: volts[0], 1: volts[1], 10: 0xFFF6}), co=block({0: 1}),
                               di=block({}), ir=block({}))


def slave_two() -> ModbusDeviceContext:
    """Slave 2: an energy counter, uint32 in little word order."""
    energy = encode_value(123456, Decoding("uint32", "little"))
    return ModbusDeviceContext(ir=block({5: energy[0], 6: energy[1]}), hr=block({}), co=block({}),
                               di=block({}))


class RtuServer:
    """Slaves 1 and 2 answering RTU requests on serial port `port`."""

    def __init__(self, port: str) -> None:
        context = ModbusServerContext(devices={1: slave_one(), 2: slave_two()}, single=False)
        self.loop = asyncio.new_event_loop()
        self.server: Any = None
        ready = threading.Event()

        async def serve() -> None:
            self.server = ModbusSerialServer(context, framer=FramerType.RTU, port=port, baudrate=BAUD)
            ready.set()
            await self.server.serve_forever()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(serve(),),
                                       daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Modbus server did not start")

    def stop(self) -> None:
        """Shut the server down and end its thread."""
        asyncio.run_coroutine_threadsafe(self.server.shutdown(), self.loop).result(10)
        self.thread.join(10)
        self.loop.close()
