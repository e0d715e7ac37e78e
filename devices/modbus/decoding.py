"""Modbus register words to values, as pure functions.

Data layout. A Modbus register is one 16-bit word sent most significant
byte first. Values wider than a word span consecutive registers; which
word comes first is not standardised, so each point names its word order:
`big` (most significant word first, "ABCD", the usual default) or
`little` ("CDAB", common on meters with a little-endian CPU).

| type | registers | value |
|---|---|---|
| `int16` / `uint16` | 1 | two's complement / unsigned |
| `int32` / `uint32` | 2 | two's complement / unsigned, in word order |
| `float32` | 2 | IEEE 754 single precision, in word order |
| `bool` | 1 coil or discrete input | true/false (no scale or offset) |

A number read is turned into the engineering value `raw * scale + offset`
(an integer stays an integer when scale is 1 and offset an integer).
Rejects: `modbus_bad_response` (wrong word count, a word outside 0..65535),
`modbus_bad_value` (a float32 NaN or infinity, the usual "no data" marker
of meters).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from devices.base import Rejected

BAD_RESPONSE = "modbus_bad_response"
BAD_VALUE = "modbus_bad_value"

WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "bool": 1}
NUMBER_TYPES = ("int16", "uint16", "int32", "uint32", "float32")
WORD_ORDERS = ("big", "little")
_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}


@dataclass(frozen=True, slots=True)
class Decoding:
    """How to turn one point's words into a value."""

    type: str = "uint16"
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.type not in WORDS:
            raise ValueError(f"unknown Modbus data type {self.type!r}")
        if self.word_order not in WORD_ORDERS:
            raise ValueError(f"unknown word order {self.word_order!r}")

    @property
    def words(self) -> int:
        """How many registers (or coils) the point spans."""
        return WORDS[self.type]


def decode_registers(words: Sequence[int], decoding: Decoding) -> int | float | Rejected:
    """The engineering value of one point's registers.

    Args:
        words: The registers as read, in address order.
        decoding: Type, word order, scale and offset.

    Returns:
        The value, or a `Rejected`.
    """
    if len(words) != decoding.words:
        return Rejected(BAD_RESPONSE, f"{decoding.type} needs {decoding.words} register(s), "
                                      f"got {len(words)}")
    if any(not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= 0xFFFF for w in words):
        return Rejected(BAD_RESPONSE, f"register values must be 0..65535, got {list(words)[:4]!r}")
    ordered = list(words) if decoding.word_order == "big" else list(reversed(words))
    data = b"".join(w.to_bytes(2, "big") for w in ordered)
    raw: int | float = struct.unpack(_STRUCT[decoding.type], data)[0]
    if isinstance(raw, float) and not math.isfinite(raw):
        return Rejected(BAD_VALUE, f"float32 {raw} (the meter's 'no data' marker)")
    return scaled(raw, decoding.scale, decoding.offset)


def scaled(raw: int | float, scale: float, offset: float) -> int | float:
    """`raw * scale + offset`, kept an int when nothing makes it fractional."""
    if isinstance(raw, int) and scale == 1 and float(offset).is_integer():
        return raw + int(offset)
    value = raw * scale + offset
    return round(value, 9)


def decode_bits(bits: Sequence[bool]) -> bool | Rejected:
    """The value of one coil or discrete input.

    Args:
        bits: The bits as read (pymodbus pads a response to 8).

    Returns:
        The first bit, or `modbus_bad_response` when nothing was read.
    """
    if not bits:
        return Rejected(BAD_RESPONSE, "no bit in the response")
    return bool(bits[0])


def encode_value(value: float, decoding: Decoding) -> list[int]:
    """The registers a device would hold for raw `value` (tests and simulators).

    Args:
        value: The raw number, before scale and offset.
        decoding: Type and word order.

    Returns:
        The words in address order.
    """
    data = struct.pack(_STRUCT[decoding.type], value)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if decoding.word_order == "big" else list(reversed(words))
