"""The BME280's compensation formulas and raw-register decoding, as pure functions.

Bosch BST-BME280-DS002, section 4.2.3 (integer formulas: 32-bit temperature,
64-bit pressure, 32-bit humidity) and section 8.1 (double precision). The
C code relies on arithmetic right shifts and on integer division that
truncates towards zero; `_div` reproduces the latter for Python's ints.

Register layout read here (all little-endian unless noted):

| address | content |
|---|---|
| 0x88-0x8D | dig_T1 (u16), dig_T2 (s16), dig_T3 (s16) |
| 0x8E-0x9F | dig_P1 (u16), dig_P2 ... dig_P9 (s16) |
| 0xA1 | dig_H1 (u8) |
| 0xE1-0xE3 | dig_H2 (s16), dig_H3 (u8) |
| 0xE4-0xE6 | dig_H4 (s12: 0xE4 << 4, 0xE5 bits 3..0), dig_H5 (s12: 0xE6 << 4, 0xE5 bits 7..4) |
| 0xE7 | dig_H6 (s8) |
| 0xF7-0xFE | press (20 bit, msb first), temp (20 bit), hum (16 bit, msb first) |

A 20-bit reading of 0x80000 (or humidity 0x8000) means "measurement
skipped": `decode_raw` rejects it as `bme280_skipped`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from devices.base import Rejected

CALIB_00 = 0x88  # 26 bytes, 0x88..0xA1
CALIB_26 = 0xE1  # 7 bytes, 0xE1..0xE7
DATA = 0xF7  # 8 bytes, 0xF7..0xFE
SKIPPED_20 = 0x80000
SKIPPED_16 = 0x8000
BME280_SKIPPED = "bme280_skipped"
BME280_BAD_CALIBRATION = "bme280_bad_calibration"
BME280_OUT_OF_RANGE = "bme280_out_of_range"


@dataclass(frozen=True, slots=True)
class Calibration:
    """The trimming parameters burnt into each BME280 at the factory."""

    t1: int
    t2: int
    t3: int
    p1: int
    p2: int
    p3: int
    p4: int
    p5: int
    p6: int
    p7: int
    p8: int
    p9: int
    h1: int
    h2: int
    h3: int
    h4: int
    h5: int
    h6: int


@dataclass(frozen=True, slots=True)
class RawReading:
    """The ADC values of one measurement."""

    adc_t: int
    adc_p: int
    adc_h: int


def parse_calibration(block0: bytes, block1: bytes) -> Calibration | Rejected:
    """The calibration from registers 0x88..0xA1 (26 bytes) and 0xE1..0xE7 (7 bytes).

    Returns:
        The calibration, or `bme280_bad_calibration` for the wrong sizes or
        the all-zero / all-ones words of a chip that is not (yet) answering.
    """
    if len(block0) != 26 or len(block1) != 7:
        return Rejected(BME280_BAD_CALIBRATION,
                        f"expected 26 + 7 calibration bytes, found {len(block0)} + {len(block1)}")
    t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = struct.unpack("<HhhHhhhhhhhh", block0[:24])
    if t1 in (0, 0xFFFF) or p1 in (0, 0xFFFF):
        return Rejected(BME280_BAD_CALIBRATION, f"dig_T1={t1}, dig_P1={p1}: not a BME280's trimming")
    h1 = block0[25]
    h2 = struct.unpack("<h", block1[0:2])[0]
    h3 = block1[2]
    e4, e5, e6 = block1[3], block1[4], block1[5]
    h4 = (_s8(e4) << 4) | (e5 & 0x0F)
    h5 = (_s8(e6) << 4) | (e5 >> 4)
    h6 = _s8(block1[6])
    return Calibration(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6)


def decode_raw(data: bytes) -> RawReading | Rejected:
    """The ADC values from registers 0xF7..0xFE.

    Returns:
        The raw reading, or a `Rejected` for a short read or a skipped measurement.
    """
    if len(data) != 8:
        return Rejected(BME280_SKIPPED, f"expected 8 data bytes, found {len(data)}")
    adc_p = (data[0] << 12) | (data[1] << 4) | (data[2] >> 4)
    adc_t = (data[3] << 12) | (data[4] << 4) | (data[5] >> 4)
    adc_h = (data[6] << 8) | data[7]
    if SKIPPED_20 in (adc_t, adc_p) or adc_h == SKIPPED_16:
        return Rejected(BME280_SKIPPED, f"measurement skipped (adc_T={adc_t:#x}, "
                                        f"adc_P={adc_p:#x}, adc_H={adc_h:#x})")
    return RawReading(adc_t, adc_p, adc_h)


def t_fine_int32(cal: Calibration, adc_t: int) -> int:
    """The shared fine temperature `t_fine` (datasheet: BME280_compensate_T_int32)."""
    var1 = (((adc_t >> 3) - (cal.t1 << 1)) * cal.t2) >> 11
    var2 = (((((adc_t >> 4) - cal.t1) * ((adc_t >> 4) - cal.t1)) >> 12) * cal.t3) >> 14
    return var1 + var2


def temperature_int32(t_fine: int) -> int:
    """Temperature in 0.01 °C: 5123 is 51.23 °C."""
    return (t_fine * 5 + 128) >> 8


def pressure_int64(cal: Calibration, t_fine: int, adc_p: int) -> int:
    """Pressure in Pa as Q24.8 (divide by 256): 24674867 is 96386.2 Pa. 0 if undefined."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.p6
    var2 = var2 + ((var1 * cal.p5) << 17)
    var2 = var2 + (cal.p4 << 35)
    var1 = ((var1 * var1 * cal.p3) >> 8) + ((var1 * cal.p2) << 12)
    var1 = (((1 << 47) + var1) * cal.p1) >> 33
    if var1 == 0:
        return 0  # avoid a division by zero
    p = 1048576 - adc_p
    p = _div(((p << 31) - var2) * 3125, var1)
    var1 = (cal.p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.p7 << 4)


def pressure_int32(cal: Calibration, t_fine: int, adc_p: int) -> int:
    """Pressure in whole Pa by the datasheet's 32-bit formula. 0 if undefined."""
    var1 = (t_fine >> 1) - 64000
    var2 = (((var1 >> 2) * (var1 >> 2)) >> 11) * cal.p6
    var2 = var2 + ((var1 * cal.p5) << 1)
    var2 = (var2 >> 2) + (cal.p4 << 16)
    var1 = (((cal.p3 * (((var1 >> 2) * (var1 >> 2)) >> 13)) >> 3) + ((cal.p2 * var1) >> 1)) >> 18
    var1 = ((32768 + var1) * cal.p1) >> 15
    if var1 == 0:
        return 0
    p = ((1048576 - adc_p - (var2 >> 12)) * 3125) & 0xFFFFFFFF  # BME280_U32_t
    p = _div(p << 1, var1) if p < 0x80000000 else _div(p, var1) * 2
    var1 = (cal.p9 * (((p >> 3) * (p >> 3)) >> 13)) >> 12
    var2 = ((p >> 2) * cal.p8) >> 13
    return p + ((var1 + var2 + cal.p7) >> 4)


def humidity_int32(cal: Calibration, t_fine: int, adc_h: int) -> int:
    """Relative humidity as Q22.10 (divide by 1024): 47445 is 46.333 %RH."""
    v = t_fine - 76800
    v = (((((adc_h << 14) - (cal.h4 << 20) - (cal.h5 * v)) + 16384) >> 15)
         * (((((((v * cal.h6) >> 10) * (((v * cal.h3) >> 11) + 32768)) >> 10) + 2097152)
             * cal.h2 + 8192) >> 14))
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.h1) >> 4)
    v = min(max(v, 0), 419430400)
    return v >> 12


def temperature_double(cal: Calibration, adc_t: int) -> tuple[float, int]:
    """Temperature in °C and t_fine by the double-precision formula (section 8.1)."""
    var1 = (adc_t / 16384.0 - cal.t1 / 1024.0) * cal.t2
    var2 = (adc_t / 131072.0 - cal.t1 / 8192.0) ** 2 * cal.t3
    return (var1 + var2) / 5120.0, int(var1 + var2)


def pressure_double(cal: Calibration, t_fine: int, adc_p: int) -> float:
    """Pressure in Pa by the double-precision formula (section 8.1)."""
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * cal.p6 / 32768.0
    var2 = var2 + var1 * cal.p5 * 2.0
    var2 = var2 / 4.0 + cal.p4 * 65536.0
    var1 = (cal.p3 * var1 * var1 / 524288.0 + cal.p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.p1
    if var1 == 0.0:
        return 0.0
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = cal.p9 * p * p / 2147483648.0
    var2 = p * cal.p8 / 32768.0
    return p + (var1 + var2 + cal.p7) / 16.0


def humidity_double(cal: Calibration, t_fine: int, adc_h: int) -> float:
    """Relative humidity in % by the double-precision formula (section 8.1)."""
    var_h = t_fine - 76800.0
    var_h = (adc_h - (cal.h4 * 64.0 + cal.h5 / 16384.0 * var_h)) * (
        cal.h2 / 65536.0 * (1.0 + cal.h6 / 67108864.0 * var_h * (1.0 + cal.h3 / 67108864.0 * var_h)))
    var_h = var_h * (1.0 - cal.h1 * var_h / 524288.0)
    return min(max(var_h, 0.0), 100.0)


def compensate(cal: Calibration, raw: RawReading) -> dict[str, float] | Rejected:
    """Record fields from one raw reading, by the integer formulas.

    Returns:
        `temperature_c`, `pressure_hpa` and `humidity_pct`, or
        `bme280_out_of_range` when the result is outside the sensor's range
        (-40..85 °C, 300..1100 hPa): the ADC values are then garbage.
    """
    t_fine = t_fine_int32(cal, raw.adc_t)
    temperature = temperature_int32(t_fine) / 100.0
    pressure = pressure_int64(cal, t_fine, raw.adc_p) / 256.0 / 100.0
    if not (-40.0 <= temperature <= 85.0 and 300.0 <= pressure <= 1100.0):
        return Rejected(BME280_OUT_OF_RANGE,
                        f"{temperature:.2f} °C, {pressure:.2f} hPa is outside the sensor's range")
    return {
        "temperature_c": temperature,
        "pressure_hpa": round(pressure, 4),
        "humidity_pct": round(humidity_int32(cal, t_fine, raw.adc_h) / 1024.0, 3),
    }


def _div(numerator: int, denominator: int) -> int:
    """C integer division: the quotient truncated towards zero."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator < 0) == (denominator < 0) else -quotient


def _s8(byte: int) -> int:
    """A byte as a signed char."""
    return byte - 256 if byte > 127 else byte
