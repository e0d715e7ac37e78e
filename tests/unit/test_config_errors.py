"""Bad gateway configs: every problem names the file, line, key path, expected and found.

docs/contracts.md, "Config problems" and "Gateway config". Each case writes
a small YAML file and checks the exact problem `load_gateway_config` reports;
the CLI tests run `python -m gateway check` as a real subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from devices.registry import DRIVERS
from gateway.config.common import ConfigError
from gateway.config.gateway_config import load_gateway_config
from gateway.config.reader import Problem

FILE = "gw.yaml"

# A valid config; the line numbers in the cases below count from it.
BASE = """\
version: 1
gateway:
  id: gw1
devices:
  - id: climate
    driver: simulator
    streams:
      - name: temperature
        field: temp_c
        delivery: at-least-once
"""
BASE_LINES = 10


def edit(old: str, new: str, text: str = BASE) -> str:
    """BASE with exactly one occurrence of `old` replaced."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def before(marker: str) -> str:
    """The lines of BASE above the one starting with `marker`."""
    return BASE[: BASE.index(marker)]


def section(name: str, *lines: str) -> str:
    """BASE plus a section starting at line 11 (its first key on line 12)."""
    return BASE + f"{name}:\n" + "".join(f"  {line}\n" for line in lines)


SECOND_DEVICE = """\
  - id: {id}
    driver: simulator
    streams:
      - name: temperature
        field: temp_c
        delivery: exactly-once
"""

SERIAL_DEVICE = """\
version: 1
gateway:
  id: gw1
devices:
  - id: climate
    driver: serial
{options}    streams:
      - name: temperature
        field: temp_c
        delivery: at-least-once
"""


@dataclass(frozen=True)
class Case:
    """One bad file and the problem expected at `path`."""

    id: str
    text: str
    line: int | None
    path: str
    expected: tuple[str, ...]
    found: tuple[str, ...]
    hint: str = ""
    count: int = 1  # problems in the whole file


CASES = [
    # -- the file as a whole ------------------------------------------------------------
    Case("missing-version", BASE.removeprefix("version: 1\n"), 1, "version",
         ("an integer",), ("the key is missing",)),
    Case("wrong-version", edit("version: 1", "version: 2"), 1, "version",
         ("1 (the config format this release reads)",), ("2 (an integer)",)),
    Case("version-not-a-number", edit("version: 1", "version: one"), 1, "version",
         ("an integer",), ("'one' (a string)",)),
    Case("yaml-syntax-error", "version: 1\ngateway:\n  id: gw1\n bad: x\n", 4, "",
         ("valid YAML",), ("YAML syntax error",)),
    Case("yaml-tab-indent", "version: 1\n\tgateway: x\n", 2, "",
         ("valid YAML",), ("YAML syntax error", "'\\t'")),
    Case("top-level-list", "- version: 1\n- devices: []\n", 1, "",
         ("a mapping at the top level",), ("a list",)),
    Case("top-level-scalar", "hello\n", 1, "",
         ("a mapping at the top level",), ("'hello' (a string)",)),
    Case("empty-file", "", None, "", ("a mapping with 'version: 1'",), ("an empty file",)),
    Case("comments-only", "# nothing yet\n", None, "", ("'version: 1'",), ("an empty file",)),
    Case("duplicate-yaml-key", BASE + "gateway:\n  id: other\n", 11, "gateway",
         ("valid YAML",), ("duplicate key 'gateway'", "first at line 2")),
    Case("unknown-top-level-key", edit("devices:", "devics:"), 4, "devics",
         ("known keys", "devices", "gateway"), ("unknown key 'devics'",),
         "did you mean 'devices'?", count=2),  # and: devices is missing
    # -- gateway --------------------------------------------------------------------------
    Case("unknown-gateway-key", edit("  id: gw1\n", "  id: gw1\n  stat_dir: ./s\n"), 4,
         "gateway.stat_dir", ("known keys", "state_dir"), ("unknown key 'stat_dir'",),
         "did you mean 'state_dir'?"),
    Case("gateway-id-with-space", edit("id: gw1", "id: gw 1"), 3, "gateway.id",
         ("letters, digits, '-' or '_'",), ("'gw 1' (a string)",)),
    Case("gateway-id-with-slash", edit("id: gw1", "id: gw/1"), 3, "gateway.id",
         ("letters, digits, '-' or '_'",), ("'gw/1'",)),
    Case("missing-gateway-id", edit("  id: gw1\n", "  state_dir: ./state\n"), 3, "gateway.id",
         ("letters, digits",), ("the key is missing",)),
    Case("missing-gateway-section", edit("gateway:\n  id: gw1\n", ""), 1, "gateway",
         ("a mapping",), ("the key is missing",)),
    # -- broker ---------------------------------------------------------------------------
    Case("unknown-broker-key", section("broker", "urll: mqtt://h:1883"), 12, "broker.urll",
         ("known keys", "topic_prefix"), ("unknown key 'urll'",), "did you mean 'url'?"),
    Case("url-http-scheme", section("broker", "url: http://broker:1883"), 12, "broker.url",
         ("mqtt://host:1883",), ("'http://broker:1883'",), "mqtt:// or mqtts://"),
    Case("url-with-credentials", section("broker", "url: mqtt://user:pw@broker"), 12,
         "broker.url", ("a URL",), ("'mqtt://user:***@broker'",),
         "credentials do not belong in the URL"),
    Case("url-port-too-big", section("broker", "url: mqtt://broker:99999"), 12, "broker.url",
         ("a URL",), ("'mqtt://broker:99999'",), "port is not a number from 1 to 65535"),
    Case("url-port-zero", section("broker", "url: mqtt://broker:0"), 12, "broker.url",
         ("a URL",), ("'mqtt://broker:0'",), "port is not a number from 1 to 65535"),
    Case("url-port-not-a-number", section("broker", "url: mqtt://broker:abc"), 12, "broker.url",
         ("a URL",), ("'mqtt://broker:abc'",), "port is not a number"),
    Case("url-unclosed-ipv6", section("broker", "url: mqtt://[::1"), 12, "broker.url",
         ("a URL",), ("'mqtt://[::1'",), "not a valid URL"),
    Case("url-without-host", section("broker", "url: mqtt://:1883"), 12, "broker.url",
         ("a URL",), ("'mqtt://:1883'",), "no host"),
    Case("topic-prefix-plus", section("broker", "topic_prefix: gw/+/data"), 12,
         "broker.topic_prefix", ("a topic prefix", "'+'"), ("'gw/+/data'",), "contains '+'"),
    Case("topic-prefix-hash", section("broker", "topic_prefix: gw/#"), 12, "broker.topic_prefix",
         ("a topic prefix",), ("'gw/#'",), "contains '#'"),
    Case("topic-prefix-nul", section("broker", 'topic_prefix: "gw/\\0x"'), 12,
         "broker.topic_prefix", ("NUL",), ("'gw/\\x00x'",), "contains '\\x00'"),
    Case("topic-prefix-unknown-placeholder", section("broker", "topic_prefix: gw/{site}"), 12,
         "broker.topic_prefix", ("gw/{gateway}",), ("'gw/{site}'",),
         "unknown placeholder {site} (only {gateway} is known)"),
    Case("topic-prefix-leading-slash", section("broker", "topic_prefix: /gw/{gateway}"), 12,
         "broker.topic_prefix", ("a topic prefix",), ("'/gw/{gateway}'",), "starts or ends with '/'"),
    Case("keepalive-below-minimum", section("broker", "keepalive: 1s"), 12, "broker.keepalive",
         ("a duration", "from 5s to 3600s"), ("'1s'",)),
    Case("session-expiry-bound-printed-exactly", section("broker", "session_expiry: -1"), 12,
         "broker.session_expiry", ("to 4294967295s",), ("-1 (an integer)",)),
    Case("max-inflight-zero", section("broker", "max_inflight: 0"), 12, "broker.max_inflight",
         ("an integer from 1 to 65535",), ("0 (an integer)",)),
    # -- store ----------------------------------------------------------------------------
    Case("unknown-store-key", section("store", "max_byte: 64MiB"), 12, "store.max_byte",
         ("known keys", "durability"), ("unknown key 'max_byte'",), "did you mean 'max_bytes'?"),
    Case("size-not-a-size", section("store", "max_bytes: lots"), 12, "store.max_bytes",
         ("a size such as 256MiB",), ("'lots' (a string)",)),
    Case("size-below-minimum", section("store", "max_bytes: 10KB"), 12, "store.max_bytes",
         ("a size", "of at least 1MiB"), ("'10KB'",)),
    Case("duration-not-a-duration", section("store", "commit_interval: soon"), 12,
         "store.commit_interval", ("a duration such as 200ms, 5s or 2m", "from 0.001s to 60s"),
         ("'soon' (a string)",)),
    Case("duration-negative", section("store", "commit_interval: -5"), 12, "store.commit_interval",
         ("a duration",), ("-5 (an integer)",)),
    Case("duration-infinite", edit("  id: gw1\n", "  id: gw1\n  summary_interval: .inf\n"), 4,
         "gateway.summary_interval", ("a duration", "of at least 1s"), ("inf (a number)",)),
    Case("durability-fsync", section("store", "durability: fsync"), 12, "store.durability",
         ("one of normal, full",), ("'fsync' (a string)",)),
    Case("on-full-unknown", section("store", "on_full: drop-newest"), 12, "store.on_full",
         ("one of refuse-new, drop-oldest",), ("'drop-newest' (a string)",),
         "did you mean 'drop-oldest'?"),
    Case("max-age-too-short", edit("        delivery: at-least-once\n",
                                   "        delivery: at-least-once\n        max_age: 200ms\n"),
         11, "devices[0].streams[0].max_age", ("a duration", "from 1s"), ("'200ms'",)),
    Case("max-age-at-most-once", edit("        delivery: at-least-once\n",
                                      "        delivery: at-most-once\n        max_age: 5m\n"),
         11, "devices[0].streams[0].max_age", ("only on a durable stream",),
         ("an at-most-once stream",)),
    Case("commit-batch-not-integer", section("store", "commit_batch: many"), 12,
         "store.commit_batch", ("an integer from 1 to 100000",), ("'many' (a string)",)),
    # -- devices --------------------------------------------------------------------------
    Case("devices-missing", before("devices:"), 1, "devices",
         ("a list",), ("the key is missing",)),
    Case("devices-empty-list", before("devices:") + "devices: []\n", 4, "devices",
         ("at least one device",), ("an empty list",)),
    Case("devices-a-mapping", before("devices:") + "devices:\n  climate: {}\n", 5, "devices",
         ("a list",), ("a mapping",)),
    Case("device-not-a-mapping", before("devices:") + "devices:\n  - climate\n", 5,
         "devices[0]", ("a mapping",), ("'climate' (a string)",)),
    Case("unknown-device-key", edit("    driver: simulator\n",
                                    "    driver: simulator\n    intervall: 5s\n"), 7,
         "devices[0].intervall", ("known keys", "interval", "seed"),
         ("unknown key 'intervall'",), "did you mean 'interval'?"),
    Case("duplicate-device-id", BASE + SECOND_DEVICE.format(id="climate"), 11, "devices[1].id",
         ("a device id used once",), ("'climate'",), "already used at line 5"),
    Case("device-id-with-slash", edit("id: climate", "id: a/b"), 5, "devices[0].id",
         ("a topic segment",), ("'a/b'",), "contains '/'"),
    Case("device-id-with-plus", edit("id: climate", "id: a+b"), 5, "devices[0].id",
         ("a topic segment",), ("'a+b'",), "contains '+'"),
    Case("device-id-with-hash", edit("id: climate", "id: 'a#b'"), 5, "devices[0].id",
         ("a topic segment",), ("'a#b'",), "contains '#'"),
    Case("device-id-empty", edit("id: climate", "id: ''"), 5, "devices[0].id",
         ("a topic segment",), ("'' (a string)",), "it is empty"),
    Case("device-id-too-long", edit("id: climate", "id: " + "d" * 65), 5, "devices[0].id",
         ("1-64 characters",), ("'ddd",), "longer than 64 characters"),
    Case("device-id-not-a-string", edit("id: climate", "id: 7"), 5, "devices[0].id",
         ("a topic segment",), ("7 (an integer)",)),
    Case("unknown-driver", edit("driver: simulator", "driver: serail\n    port: /dev/ttyUSB0"),
         6, "devices[0].driver", ("one of bme280, gpio, modbus, nmea, serial, simulator, w1",),
         ("'serail' (a string)",),
         "did you mean 'serial'?"),  # count=1: 'port' is not called an unknown key
    Case("serial-without-port", SERIAL_DEVICE.format(options=""), 5, "devices[0].port",
         ("an absolute device path",), ("the key is missing",)),
    Case("csv-without-columns",
         SERIAL_DEVICE.format(options="    port: /dev/ttyUSB0\n    format: csv\n"), 5,
         "devices[0].columns", ("column names", "format csv"), ("the key is missing",)),
    Case("simulator-interval-not-a-duration",
         edit("    driver: simulator\n", "    driver: simulator\n    interval: often\n"), 7,
         "devices[0].interval", ("a duration",), ("'often'",)),
    # -- the hardware drivers' own keys ----------------------------------------------------
    Case("gpio-without-line", SERIAL_DEVICE.format(options="").replace("serial", "gpio"), 5,
         "devices[0].line", ("a line offset (0-1023) or name",), ("the key is missing",)),
    Case("gpio-line-out-of-range",
         SERIAL_DEVICE.replace("serial", "gpio").format(options="    line: 5000\n    field: temp_c\n"),
         7, "devices[0].line", ("a line offset (0-1023)",), ("5000",)),
    Case("gpio-debounce-with-level-mode",
         SERIAL_DEVICE.replace("serial", "gpio").format(
             options="    line: 4\n    mode: level\n    debounce: 5ms\n    field: temp_c\n"),
         9, "devices[0].debounce", ("no 'debounce' with mode level",), ("'debounce' given",)),
    Case("modbus-unknown-type",
         SERIAL_DEVICE.replace("serial", "modbus").format(
             options="    port: /dev/ttyUSB0\n    registers:\n      - field: temp_c\n"
                     "        address: 3\n        type: float16\n"),
         11, "devices[0].registers[0].type", ("one of int16, uint16, int32, uint32, float32",),
         ("'float16'",), "did you mean 'float32'?"),
    Case("modbus-scale-on-a-coil",
         SERIAL_DEVICE.replace("serial", "modbus").format(
             options="    port: /dev/ttyUSB0\n    registers:\n      - field: temp_c\n"
                     "        table: coil\n        address: 3\n        scale: 0.1\n"),
         12, "devices[0].registers[0].scale", ("no 'scale' for a coil",), ("'scale' given",)),
    Case("modbus-slave-out-of-range",
         SERIAL_DEVICE.replace("serial", "modbus").format(
             options="    port: /dev/ttyUSB0\n    registers:\n      - field: temp_c\n"
                     "        address: 3\n        slave: 300\n"),
         11, "devices[0].registers[0].slave", ("an integer from 1 to 247",), ("300",)),
    Case("modbus-without-registers",
         SERIAL_DEVICE.replace("serial", "modbus").format(options="    port: /dev/ttyUSB0\n"),
         5, "devices[0].registers", ("a list",), ("the key is missing",)),
    Case("nmea-odd-baudrate",
         SERIAL_DEVICE.replace("serial", "nmea").format(options="    port: /dev/ttyACM0\n"
                                                                "    baudrate: 9601\n")
         .replace("field: temp_c", "field: speed_kmh"),
         8, "devices[0].baudrate", ("one of 4800, 9600",), ("9601",)),
    Case("w1-bad-probe-id",
         SERIAL_DEVICE.replace("serial", "w1").format(
             options="    probes:\n      - id: 10-abc\n        field: temp_c\n"),
         8, "devices[0].probes[0].id", ("a DS18B20 id such as 28-",), ("'10-abc'",)),
    Case("bme280-wrong-address",
         SERIAL_DEVICE.replace("serial", "bme280").format(options="    address: 0x40\n")
         .replace("field: temp_c", "field: temperature_c"),
         7, "devices[0].address", ("0x76 or 0x77",), ("64 (an integer)",)),
    Case("bme280-field-not-offered",
         SERIAL_DEVICE.replace("serial", "bme280").format(options=""), 9,
         "devices[0].streams[0].field", ("humidity_pct", "temperature_c"), ("'temp_c'",)),
    # -- report by exception ----------------------------------------------------------------
    Case("deadband-not-a-number", edit("        delivery: at-least-once\n",
                                       "        delivery: at-least-once\n        deadband: lots\n"),
         11, "devices[0].streams[0].deadband", ("a number >= 0 or a percentage",), ("'lots'",)),
    Case("deadband-negative", edit("        delivery: at-least-once\n",
                                   "        delivery: at-least-once\n        deadband: -1\n"),
         11, "devices[0].streams[0].deadband", ("a number >= 0",), ("-1 (an integer)",)),
    Case("max-interval-not-a-duration", edit("        delivery: at-least-once\n",
                                             "        delivery: at-least-once\n"
                                             "        max_interval: x\n"),
         11, "devices[0].streams[0].max_interval", ("a duration",), ("'x'",)),
    # -- streams --------------------------------------------------------------------------
    Case("streams-empty-list", before("    streams:") + "    streams: []\n", 7,
         "devices[0].streams", ("at least one stream",), ("an empty list",)),
    Case("streams-missing", before("    streams:"), 5, "devices[0].streams",
         ("a list",), ("the key is missing",)),
    Case("unknown-stream-key", edit("        field: temp_c\n", "        field: temp_c\n        units: C\n"),
         10, "devices[0].streams[0].units", ("known keys", "unit", "delivery"),
         ("unknown key 'units'",), "did you mean 'unit'?"),
    Case("duplicate-stream-name",
         BASE + "      - name: temperature\n        field: temp_c\n        delivery: at-most-once\n",
         11, "devices[0].streams[1].name", ("a stream name used once per device",),
         ("'temperature'",), "already used at line 8"),
    Case("stream-name-with-space", edit("name: temperature", "name: air temp"), 8,
         "devices[0].streams[0].name", ("a topic segment",), ("'air temp'",), "white space"),
    Case("delivery-underscore", edit("at-least-once", "exactly_once"), 10,
         "devices[0].streams[0].delivery", ("one of at-most-once, at-least-once, exactly-once",),
         ("'exactly_once' (a string)",), "did you mean 'exactly-once'?"),
    Case("delivery-missing", edit("        delivery: at-least-once\n", ""), 8,
         "devices[0].streams[0].delivery", ("one of at-most-once, at-least-once, exactly-once",),
         ("the key is missing",)),
    Case("delivery-qos-number", edit("delivery: at-least-once", "delivery: 1"), 10,
         "devices[0].streams[0].delivery", ("one of at-most-once",), ("1 (an integer)",)),
    Case("simulator-field-not-offered", edit("field: temp_c", "field: temp_C"), 9,
         "devices[0].streams[0].field", ("fields the driver offers", "humidity_pct", "temp_c"),
         ("'temp_C' (a string)",), "did you mean 'temp_c'?"),
    Case("csv-field-not-a-column",
         SERIAL_DEVICE.format(options="    port: /dev/ttyUSB0\n    format: csv\n"
                                      "    columns: [temp, rh]\n"),
         12, "devices[0].streams[0].field", ("fields the driver offers: rh, temp",),
         ("'temp_c'",), "did you mean 'temp'?"),
]


def write(tmp_path: Path, text: str, name: str = FILE) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_in(path: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(path, DRIVERS)
    assert caught.value.problems, "a ConfigError must list its problems"
    return caught.value.problems


def test_the_base_config_is_valid(tmp_path: Path) -> None:
    assert BASE.count("\n") == BASE_LINES
    config = load_gateway_config(write(tmp_path, BASE), DRIVERS)
    assert config.gateway_id == "gw1"
    assert [d.id for d in config.devices] == ["climate"]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_config_names_the_problem(tmp_path: Path, case: Case) -> None:
    path = write(tmp_path, case.text)
    problems = problems_in(path)
    described = "\n".join(map(str, problems))
    assert len(problems) == case.count, described
    matching = [p for p in problems if p.path == case.path]
    assert len(matching) == 1, f"no single problem at {case.path!r}:\n{described}"
    problem = matching[0]
    assert problem.file == str(path)
    assert problem.line == case.line, described
    for word in case.expected:
        assert word in problem.expected, described
    for word in case.found:
        assert word in problem.found, described
    assert case.hint in problem.hint, described
    where = f"{path}:{case.line}" if case.line is not None else str(path)
    assert str(problem).startswith(f"{where}: {case.path or '(top level)'}: expected "), described


def test_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


def test_drop_policies_are_read(tmp_path: Path) -> None:
    text = edit("        delivery: at-least-once\n",
                "        delivery: at-least-once\n        max_age: 10m\n")
    text += "store:\n  on_full: drop-oldest\n"
    config = load_gateway_config(write(tmp_path, text), DRIVERS)
    assert config.store.on_full == "drop-oldest"
    assert config.devices[0].streams[0].max_age == 600.0
    plain = load_gateway_config(write(tmp_path, BASE, "plain.yaml"), DRIVERS)
    assert (plain.store.on_full, plain.devices[0].streams[0].max_age) == ("refuse-new", None)


def test_the_same_stream_name_in_two_devices_is_fine(tmp_path: Path) -> None:
    config = load_gateway_config(write(tmp_path, BASE + SECOND_DEVICE.format(id="other")), DRIVERS)
    assert [(d.id, [s.name for s in d.streams]) for d in config.devices] == [
        ("climate", ["temperature"]),
        ("other", ["temperature"]),
    ]


def test_an_ipv6_broker_is_shown_with_brackets(tmp_path: Path) -> None:
    config = load_gateway_config(write(tmp_path, section("broker", "url: mqtt://[::1]:1884")), DRIVERS)
    assert config.broker.address.host == "::1"
    assert config.broker.address.port == 1884
    assert str(config.broker.address) == "mqtt://[::1]:1884"


def test_yaml_nested_too_deeply_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\ndevices: " + "[" * 5000 + "]" * 5000 + "\n")
    [problem] = problems_in(path)
    assert (problem.path, problem.expected) == ("", "valid YAML")
    assert "nested too deeply" in problem.found


def test_a_nested_duplicate_key_names_its_path(tmp_path: Path) -> None:
    text = edit("        delivery: at-least-once\n",
                "        delivery: at-least-once\n        delivery: at-most-once\n")
    [problem] = problems_in(write(tmp_path, text))
    assert problem.line == 11
    assert problem.path == "devices[0].streams[0].delivery"


MANY_PROBLEMS = """\
version: 1
gateway:
  id: green house
broker:
  url: http://broker:1883
store:
  durability: fsync
devices:
  - id: climate
    driver: serail
    streams:
      - name: temperature
        delivery: exactly_once
      - name: temperature
        delivery: at-most-once
  - id: climate
    driver: simulator
    streams: []
colour: green
"""

MANY_EXPECTED = [  # (line, path, a word of found or hint), in the order reported
    (3, "gateway.id", "'green house'"),
    (5, "broker.url", "mqtt:// or mqtts://"),
    (7, "store.durability", "'fsync'"),
    (10, "devices[0].driver", "did you mean 'serial'?"),
    (13, "devices[0].streams[0].delivery", "did you mean 'exactly-once'?"),
    (14, "devices[0].streams[1].name", "already used at line 12"),
    (16, "devices[1].id", "already used at line 9"),
    (18, "devices[1].streams", "an empty list"),
    (19, "colour", "unknown key 'colour'"),
]


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_in(write(tmp_path, MANY_PROBLEMS))
    described = "\n".join(map(str, problems))
    assert len(problems) == len(MANY_EXPECTED), described
    for problem, (line, path, word) in zip(problems, MANY_EXPECTED, strict=True):
        assert (problem.line, problem.path) == (line, path), described
        assert word in f"{problem.found} ({problem.hint})", described


# -- the command line, as a real process ---------------------------------------------------

def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


def test_check_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    write(tmp_path, MANY_PROBLEMS, "bad.yaml")
    result = run_cli(tmp_path, "check", "--config", "bad.yaml")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(MANY_EXPECTED) + 1
    for text, (line, path, word) in zip(lines, MANY_EXPECTED, strict=False):
        assert text.startswith(f"error: bad.yaml:{line}: {path}: expected "), text
        assert word in text
    assert lines[-1] == f"{len(MANY_EXPECTED)} problems found"


def test_check_of_a_valid_file_exits_0(tmp_path: Path) -> None:
    write(tmp_path, BASE, "good.yaml")
    result = run_cli(tmp_path, "check", "--config", "good.yaml")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("good.yaml: valid gateway config: gateway gw1, 1 devices, 1 streams")


def test_check_of_a_missing_file_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", "--config", "nowhere.yaml")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: nowhere.yaml: (top level): expected a readable config file; found no such file" \
        in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("check", "--config"), "argument --config: expected one argument"),
        (("frobnicate", "--config", "x.yaml"), "invalid choice: 'frobnicate'"),
        ((), "the following arguments are required: COMMAND"),
    ],
    ids=["config-without-a-file", "unknown-subcommand", "no-subcommand"],
)
def test_bad_command_line_exits_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli(tmp_path, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: mqtt-gateway")
    assert message in result.stderr


def test_check_of_deeply_nested_yaml_has_no_traceback(tmp_path: Path) -> None:
    write(tmp_path, "version: 1\ndevices: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    result = run_cli(tmp_path, "check", "--config", "deep.yaml")
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
