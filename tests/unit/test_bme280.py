"""BME280: the datasheet compensation formulas, and the driver against a fake SMBus.

The calibration words and ADC values are the compensation example of the
Bosch BMP280 data sheet (BST-BMP280-DS001, section 3.12), whose temperature
and pressure formulas are the BME280's (BST-BME280-DS002, section 4.2.3):
dig_T1..3 = 27504, 26435, -1000; dig_P1..9 = 36477, -10685, 3024, 2855,
140, -7, 15500, -14600, 6000; adc_T = 519888, adc_P = 415148, giving
t_fine = 128422, T = 25.08 °C and p = 100653.27 Pa. Humidity has no worked
example in the data sheet; it is checked by agreement of the integer and
double-precision formulas of the data sheet over a range of inputs.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.base import Rejected
from devices.bme280 import compensation as comp
from devices.bme280.driver import CHIP_ID, REG_CTRL_MEAS, REG_STATUS, Bme280, Bme280Options, poll_forever
from tests.support.recording_sink import RecordingSink, running
from tests.support.waiting import wait_for

T = (27504, 26435, -1000)
P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
H = (75, 362, 0, 313, 50, 30)  # a plausible humidity trimming (H1, H2, H3, H4, H5, H6)
ADC_T, ADC_P, ADC_H = 519888, 415148, 30000


def calibration_bytes() -> tuple[bytes, bytes]:
    block0 = struct.pack("<HhhHhhhhhhhh", *T, *P) + bytes([0, H[0]])
    h4, h5 = H[3], H[4]
    block1 = struct.pack("<hB", H[1], H[2]) + bytes([
        (h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4), (h5 >> 4) & 0xFF, H[5] & 0xFF])
    return block0, block1


def data_bytes(adc_t: int = ADC_T, adc_p: int = ADC_P, adc_h: int = ADC_H) -> bytes:
    return bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
                  adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4, adc_h >> 8, adc_h & 0xFF])


CAL = comp.parse_calibration(*calibration_bytes())


def test_calibration_is_decoded_from_the_register_layout() -> None:
    assert isinstance(CAL, comp.Calibration)
    assert (CAL.t1, CAL.t2, CAL.t3) == T
    assert (CAL.p1, CAL.p5, CAL.p9) == (36477, 140, 6000)
    assert (CAL.h1, CAL.h2, CAL.h3, CAL.h4, CAL.h5, CAL.h6) == H


def test_negative_h4_h5_h6_keep_their_sign() -> None:
    block0, _ = calibration_bytes()
    block1 = struct.pack("<hB", 362, 0) + bytes([0xFE, 0x3A, 0xFC, 0xF6])
    cal = comp.parse_calibration(block0, block1)
    assert isinstance(cal, comp.Calibration)
    assert (cal.h4, cal.h5, cal.h6) == (-32 + 0xA, -64 + 3, -10)


def test_datasheet_example_temperature() -> None:
    assert isinstance(CAL, comp.Calibration)
    t_fine = comp.t_fine_int32(CAL, ADC_T)
    assert t_fine == 128422
    assert comp.temperature_int32(t_fine) == 2508
    celsius, t_fine_double = comp.temperature_double(CAL, ADC_T)
    assert round(celsius, 2) == 25.08 and t_fine_double == 128422


def test_datasheet_example_pressure() -> None:
    assert isinstance(CAL, comp.Calibration)
    t_fine = comp.t_fine_int32(CAL, ADC_T)
    assert comp.pressure_int64(CAL, t_fine, ADC_P) / 256 == pytest.approx(100653.27, abs=0.05)
    assert comp.pressure_double(CAL, t_fine, ADC_P) == pytest.approx(100653.27, abs=0.05)
    assert comp.pressure_int32(CAL, t_fine, ADC_P) == pytest.approx(100653, abs=5)


@given(st.integers(300_000, 700_000), st.integers(200_000, 600_000))
def test_integer_and_double_pressure_agree(adc_t: int, adc_p: int) -> None:
    assert isinstance(CAL, comp.Calibration)
    t_fine = comp.t_fine_int32(CAL, adc_t)
    assert comp.pressure_int64(CAL, t_fine, adc_p) / 256 == pytest.approx(
        comp.pressure_double(CAL, t_fine, adc_p), abs=1.0)


@given(st.integers(400_000, 600_000), st.integers(0, 65535))
def test_integer_and_double_humidity_agree(adc_t: int, adc_h: int) -> None:
    assert isinstance(CAL, comp.Calibration)
    t_fine = comp.t_fine_int32(CAL, adc_t)
    integer = comp.humidity_int32(CAL, t_fine, adc_h) / 1024
    assert 0.0 <= integer <= 100.0
    assert integer == pytest.approx(comp.humidity_double(CAL, t_fine, adc_h), abs=0.05)


def test_c_division_truncates_towards_zero() -> None:
    assert (comp._div(-7, 2), comp._div(7, -2), comp._div(7, 2)) == (-3, -3, 3)


@pytest.mark.parametrize(("data", "reason"), [
    (data_bytes(adc_t=0x80000), comp.BME280_SKIPPED),
    (data_bytes(adc_h=0x8000), comp.BME280_SKIPPED),
    (b"\x00" * 7, comp.BME280_SKIPPED),
])
def test_skipped_measurements_are_rejected(data: bytes, reason: str) -> None:
    result = comp.decode_raw(data)
    assert isinstance(result, Rejected) and result.reason == reason


def test_a_blank_calibration_is_rejected() -> None:
    result = comp.parse_calibration(b"\x00" * 26, b"\x00" * 7)
    assert isinstance(result, Rejected) and result.reason == comp.BME280_BAD_CALIBRATION


class FakeBus:
    """An SMBus with a BME280's registers: forced mode runs one 'measurement'."""

    def __init__(self, data: bytes = data_bytes(), busy_checks: int = 2) -> None:
        block0, block1 = calibration_bytes()
        self.regs = bytearray(256)
        self.regs[0xD0] = CHIP_ID
        self.regs[0x88:0x88 + 26] = block0
        self.regs[0xE1:0xE1 + 7] = block1
        self.data = data
        self.busy_checks = busy_checks
        self.busy = 0
        self.writes: list[tuple[int, int]] = []
        self.fail = False
        self.closed = 0

    def _check(self, address: int) -> None:
        if self.fail or address != 0x76:
            raise OSError(121, "Remote I/O error")

    def read_byte_data(self, address: int, register: int) -> int:
        self._check(address)
        if register == REG_STATUS:
            self.busy = max(self.busy - 1, 0)
            return 0x08 if self.busy else 0
        return self.regs[register]

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        self._check(address)
        return list(self.regs[register:register + length])

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self._check(address)
        self.writes.append((register, value))
        if register == REG_CTRL_MEAS and value & 0b11 == 0b01:
            self.busy = self.busy_checks
            self.regs[0xF7:0xFF] = self.data

    def close(self) -> None:
        self.closed += 1


def test_forced_measurement_gives_the_datasheet_values() -> None:
    bus = FakeBus()
    waits: list[float] = []
    fields = Bme280(bus, 0x76, pause=waits.append).measure()
    assert fields == {"temperature_c": 25.08, "pressure_hpa": pytest.approx(1006.5325, abs=0.001),
                      "humidity_pct": pytest.approx(55.0, abs=0.05)}
    assert bus.writes == [(0xF2, 0b001), (0xF4, 0b001_001_01)]  # ctrl_hum before ctrl_meas
    assert len(waits) == 2


def test_a_sensor_that_never_finishes_is_a_timeout() -> None:
    result = Bme280(FakeBus(busy_checks=1000), 0x76, pause=lambda _: None).measure()
    assert isinstance(result, Rejected) and result.reason == "bme280_timeout"


def test_driver_loop_reports_readings_and_a_failing_bus(tmp_path: Path) -> None:
    bus = FakeBus()
    sink = RecordingSink()
    options = Bme280Options(bus=1, address=0x76, interval=0.1)
    with running(lambda s: poll_forever(options, lambda: bus, s), sink):
        wait_for(lambda: len(sink.fields) >= 2, what="two measurements")
        bus.fail = True
        wait_for(lambda: any(not up for up, _ in sink.states), what="the device reported down")
        bus.fail = False
        wait_for(lambda: sum(1 for up, _ in sink.states if up) >= 2, timeout=15, what="back up")
    assert sink.fields[0]["temperature_c"] == 25.08
    assert bus.closed >= 1
    assert "Remote I/O error" in next(d for up, d in sink.states if not up)
