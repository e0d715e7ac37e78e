"""What `check` tells an operator beyond "invalid": the most likely cause of a YAML syntax
error, with its line, and warnings about device nodes absent now."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.registry import DRIVERS
from gateway.config.check import check_warnings, problems_in
from gateway.config.starter import starter

CASES = [
    ("version: 1\ngateway:\n  id: x\n   state_dir: ./s\n", 4,
     "line 4 is '   state_dir: ./s': most likely its indentation is deeper than a key"),
    ("version: 1\ngateway:\n\tid: x\n", 3,
     "a tab in the indentation of line 3: YAML indents with spaces only"),
    ("version: 1\ngateway: {id: x\nbroker:\n  url: y\n", 3,
     "most likely an unclosed '{' (opened at line 2): close it with '}'"),
    ('version: 1\ngateway:\n  id: "x\nbroker:\n  url: y\n', 6,
     "most likely an unclosed quote (opened at line 3)"),
    ("version: 1\ndevices:\n  - id: a\n    streams: [a, b\n  - id: b\n", 5,
     "most likely an unclosed '[' (opened at line 4)"),
    ("a:\n  b: 1\n c: 2\n", 3,
     "most likely the indentation: line 3 (' c: 2') is indented 1 spaces, the lines above "
     "it 0, 2"),
    ("a: 1\nb:\n  - x\n - y\n", 4, "most likely the indentation: line 4 (' - y')"),
    ("broker:\n  url: mqtt://h\n  subscribe: a: b\n", 3, "a value holding ': ' needs quotes"),
]


@pytest.mark.parametrize(("text", "line", "hint"), CASES)
def test_a_yaml_syntax_error_says_what_was_most_likely_done_and_where(
        tmp_path: Path, text: str, line: int, hint: str) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    [problem] = problems_in(path, DRIVERS)
    assert problem.line == line
    assert problem.found.startswith("YAML syntax error: ")
    assert hint in problem.hint, problem.hint
    assert "\n" not in str(problem)


def test_a_long_line_is_shown_shortened(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("a: 1\nb: x: " + "y" * 200 + "\n")
    [problem] = problems_in(path, DRIVERS)
    assert "..." in problem.hint and len(problem.hint) < 200


def config(tmp_path: Path, driver: str, old: str = "", new: str = "") -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(starter(driver, False, str(path)).replace(old, new))
    return path


def test_warnings_name_each_absent_device_node_with_a_hint(tmp_path: Path) -> None:
    path = config(tmp_path, "gpio", "/dev/gpiochip0", "/dev/gpiochip250")
    assert check_warnings(path, DRIVERS) == [
        "door: chip /dev/gpiochip250 does not exist now (gpiodetect lists the GPIO chips)"]
    path = config(tmp_path, "bme280", "bus: 1   ", "bus: 250 ")
    assert check_warnings(path, DRIVERS) == [
        "air: /dev/i2c-250 does not exist now (enable I2C: dtparam=i2c_arm=on in config.txt, "
        "or modprobe i2c-dev; i2cdetect -l lists the buses)"]


def test_warnings_name_an_absent_one_wire_bus_and_each_absent_probe(tmp_path: Path) -> None:
    base = tmp_path / "w1"
    text = starter("w1", False, "gw.yaml").replace(
        "    probes:", f"    base_dir: {base}\n    probes:")
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    assert check_warnings(path, DRIVERS) == [
        f"soil: {base} does not exist now (enable 1-Wire: dtoverlay=w1-gpio in config.txt)"]
    base.mkdir()
    assert check_warnings(path, DRIVERS) == [
        f"soil: probe 28-0316a2795aff is not under {base} now (ls {base})"]
    (base / "28-0316a2795aff").mkdir()
    assert check_warnings(path, DRIVERS) == []


def test_a_consumer_config_has_no_device_warnings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(starter(None, True, str(path)))
    assert check_warnings(path, DRIVERS) == []
