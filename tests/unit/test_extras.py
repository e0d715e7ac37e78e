"""Optional libraries: each one missing gives one line naming the pip extra that brings it.

A library is made missing by putting None in `sys.modules` (then importing it raises
ModuleNotFoundError, as when it is not installed).
"""

from __future__ import annotations

import asyncio
import sys
import tomllib
from pathlib import Path

import pytest

from devices import nmea
from devices.bme280.driver import Bme280Options
from devices.bme280.driver import start as start_bme280
from devices.gpio.driver import GpioOptions, request_line
from devices.modbus.driver import ModbusOptions, poll_bus
from devices.registry import DRIVERS
from gateway import cli
from gateway.cloud.database import PostgresReadings, read_gaps
from gateway.config.check import check_file, missing_extras
from gateway.config.consumer_config import load_consumer_config
from gateway.config.gateway_config import load_gateway_config
from gateway.core.extras import EXTRAS, GPS, MODBUS, Extra, MissingExtra, MissingExtras, missing_extra
from tests.support.recording_sink import RecordingSink

REPO = Path(__file__).resolve().parents[2]
PG_URL = "postgresql://reader:secret@127.0.0.1:1/readings"

GATEWAY = """\
version: 1
gateway:
  id: plant-01
  state_dir: {state}
broker:
  url: mqtt://127.0.0.1:1883
devices:
  - id: climate
    driver: modbus
    port: /dev/ttyUSB0
    registers:
      - {{field: temperature_c, address: 0, type: int16}}
    streams:
      - {{name: temperature, field: temperature_c, delivery: at-least-once}}
  - id: position
    driver: nmea
    port: /dev/ttyACM0
    streams:
      - {{name: fix, field: fix_quality, delivery: at-most-once}}
"""

CONSUMER = f"""\
version: 1
broker:
  url: mqtt://127.0.0.1:1883
  client_id: consumer-1
  subscribe: gw/#
database: {PG_URL}
"""


def without(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make importing each of `modules` fail as if it were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_message_names_the_library_and_the_extra() -> None:
    assert missing_extra("device climate: driver modbus", "pymodbus", "modbus") == \
        "device climate: driver modbus needs pymodbus: pip install 'mqtt-gateway[modbus]'"
    assert missing_extra("a postgresql:// database", "psycopg", "postgres", "no pq wrapper") == \
        ("a postgresql:// database needs psycopg: pip install 'mqtt-gateway[postgres]' "
         "(import psycopg: no pq wrapper)")


def test_an_extra_reports_a_missing_library_and_nothing_for_an_installed_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert MODBUS.missing("driver modbus") is None
    without(monkeypatch, "pymodbus")
    assert MODBUS.missing("driver modbus") == \
        "driver modbus needs pymodbus: pip install 'mqtt-gateway[modbus]'"


def test_a_library_that_is_there_but_fails_to_import_says_why_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "brokenlib.py", 'raise ImportError("no pq wrapper available.\\n'
                                    '- couldn\'t import psycopg \'c\' implementation")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    line = Extra("postgres", "brokenlib").missing("a postgresql:// database")
    assert line == ("a postgresql:// database needs brokenlib: pip install 'mqtt-gateway[postgres]' "
                    "(import brokenlib: no pq wrapper available.)")


def test_the_extras_are_those_of_pyproject_and_test_pulls_them_all() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    optional = project["optional-dependencies"]
    for extra in EXTRAS:
        assert len(optional[extra.name]) == 1
        assert optional[extra.name][0].startswith(extra.library), (extra, optional[extra.name])
    assert set(optional) == {extra.name for extra in EXTRAS} | {"test"}
    names = ",".join(sorted(extra.name for extra in EXTRAS))
    assert any(req.replace(" ", "").startswith("mqtt-gateway[") and
               ",".join(sorted(req.split("[")[1].split("]")[0].split(","))) == names
               for req in optional["test"]), optional["test"]
    plain = " ".join(project["dependencies"])
    for extra in EXTRAS:
        assert extra.library not in plain


def test_each_hardware_driver_names_its_extra() -> None:
    extras = {name: spec.extra.name if spec.extra else None for name, spec in DRIVERS.items()}
    assert extras == {"serial": None, "simulator": None, "w1": None, "gpio": "gpio",
                      "modbus": "modbus", "nmea": "gps", "bme280": "i2c"}


# -- where each driver imports its library --------------------------------------------

def test_gpio_without_gpiod(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "gpiod")
    with pytest.raises(MissingExtra) as caught:
        request_line(GpioOptions(line=4))
    assert str(caught.value) == "driver gpio needs gpiod: pip install 'mqtt-gateway[gpio]'"


def test_modbus_without_pymodbus(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "pymodbus", "pymodbus.client")
    with pytest.raises(MissingExtra) as caught:
        asyncio.run(poll_bus(ModbusOptions(port="/dev/ttyUSB0", registers=()), RecordingSink()))
    assert str(caught.value) == "driver modbus needs pymodbus: pip install 'mqtt-gateway[modbus]'"


def test_bme280_without_smbus2(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "smbus2")
    with pytest.raises(MissingExtra) as caught:
        asyncio.run(start_bme280("env", Bme280Options())(RecordingSink()))
    assert str(caught.value) == "driver bme280 needs smbus2: pip install 'mqtt-gateway[i2c]'"


def test_nmea_without_pynmeagps(monkeypatch: pytest.MonkeyPatch) -> None:
    body = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    sentence = f"${body}*{nmea.checksum(body):02X}".encode()
    nmea._decoder.cache_clear()
    without(monkeypatch, "pynmeagps")
    try:
        with pytest.raises(MissingExtra) as caught:
            nmea.parse_nmea(sentence)
    finally:
        nmea._decoder.cache_clear()
    assert str(caught.value) == "driver nmea needs pynmeagps: pip install 'mqtt-gateway[gps]'"
    assert caught.value.extra == GPS.name


def test_postgres_backend_without_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    without(monkeypatch, "psycopg")
    line = "a postgresql:// database needs psycopg: pip install 'mqtt-gateway[postgres]'"
    with pytest.raises(MissingExtra) as caught:
        PostgresReadings(PG_URL)
    assert str(caught.value) == line
    with pytest.raises(MissingExtra) as caught:
        read_gaps(PG_URL)
    assert str(caught.value) == line


# -- check, run and consume -----------------------------------------------------------

def test_check_names_every_device_whose_library_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "gateway.yaml", GATEWAY.format(state=tmp_path / "state"))
    config = load_gateway_config(path, DRIVERS)
    assert missing_extras(config, DRIVERS) == []
    without(monkeypatch, "pymodbus", "pynmeagps")
    assert missing_extras(load_gateway_config(path, DRIVERS), DRIVERS) == [
        "device climate: driver modbus needs pymodbus: pip install 'mqtt-gateway[modbus]'",
        "device position: driver nmea needs pynmeagps: pip install 'mqtt-gateway[gps]'",
    ]
    with pytest.raises(MissingExtras):
        check_file(path, DRIVERS)


def test_cli_check_prints_one_line_per_missing_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "gateway.yaml", GATEWAY.format(state=tmp_path / "state"))
    without(monkeypatch, "pymodbus")
    assert cli.main(["check", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("error: device climate: driver modbus needs pymodbus: "
                   "pip install 'mqtt-gateway[modbus]'\n1 problem found\n")


def test_a_postgres_consumer_config_without_psycopg_loads_and_check_names_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "consumer.yaml", CONSUMER)
    without(monkeypatch, "psycopg")
    config = load_consumer_config(path)
    assert config.is_postgres
    assert cli.main(["check", "--config", str(path)]) == 1
    assert capsys.readouterr().err == (
        "error: a postgresql:// database needs psycopg: pip install 'mqtt-gateway[postgres]'\n"
        "1 problem found\n")
