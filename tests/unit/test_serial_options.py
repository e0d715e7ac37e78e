"""Serial driver config keys: defaults, validation and the problems reported."""

from __future__ import annotations

import textwrap

import pytest

from devices.serial.port import SerialOptions, offered_fields, read_options
from gateway.config.reader import MapReader, Problem
from gateway.config.yaml_source import load_located


def read(yaml_text: str) -> tuple[SerialOptions | None, list[str]]:
    """Read a device mapping written as YAML; return the options and problem lines."""
    root, errors = load_located(textwrap.dedent(yaml_text))
    assert root is not None
    assert errors == []
    problems: list[Problem] = []
    reader = MapReader(root, "devices[0]", "gw.yaml", problems)
    options = read_options(reader)
    for key in ("id", "driver", "streams"):  # the gateway's own keys
        reader.has(key)
    reader.finish()
    return options, [str(problem) for problem in problems]


def test_minimal_device_gets_the_defaults() -> None:
    options, problems = read(
        """
        id: climate
        driver: serial
        port: /dev/ttyUSB0
        """
    )
    assert problems == []
    assert options == SerialOptions(
        port="/dev/ttyUSB0",
        baudrate=9600,
        format="json",
        columns=(),
        delimiter=",",
        max_line_bytes=4096,
        reopen_max=30.0,
    )
    assert offered_fields(options) is None


def test_every_key_is_read() -> None:
    options, problems = read(
        """
        port: /dev/serial/by-id/usb-FTDI-if00
        baudrate: 115200
        format: csv
        columns: [temp_c, humidity_pct]
        delimiter: ";"
        max_line_bytes: 64KiB
        reopen_max: 500ms
        """
    )
    assert problems == []
    assert options == SerialOptions(
        port="/dev/serial/by-id/usb-FTDI-if00",
        baudrate=115200,
        format="csv",
        columns=("temp_c", "humidity_pct"),
        delimiter=";",
        max_line_bytes=65536,
        reopen_max=0.5,
    )
    assert offered_fields(options) == frozenset({"temp_c", "humidity_pct"})


def test_kv_offers_any_field() -> None:
    options, problems = read("port: /dev/ttyS0\nformat: kv\n")
    assert problems == []
    assert options is not None
    assert offered_fields(options) is None


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "driver: serial\n",
            "gw.yaml:1: devices[0].port: expected an absolute device path such as /dev/ttyUSB0;"
            " found nothing (the key is missing)",
        ),
        (
            "port: ttyUSB0\n",
            "gw.yaml:1: devices[0].port: expected an absolute device path such as /dev/ttyUSB0;"
            " found 'ttyUSB0' (a string)",
        ),
        (
            "port: /dev/ttyS0\nbaudrate: 300\n",
            "gw.yaml:2: devices[0].baudrate: expected a baud rate from 1200 to 4000000, such as"
            " 9600 or 115200; found 300 (an integer)",
        ),
        (
            "port: /dev/ttyS0\nbaudrate: fast\n",
            "gw.yaml:2: devices[0].baudrate: expected an integer; found 'fast' (a string)",
        ),
        (
            "port: /dev/ttyS0\nformat: jsn\n",
            "gw.yaml:2: devices[0].format: expected one of json, csv, kv;"
            " found 'jsn' (a string) (did you mean 'json'?)",
        ),
        (
            "port: /dev/ttyS0\nmax_line_bytes: 8\n",
            "gw.yaml:2: devices[0].max_line_bytes: expected a size from 16 bytes to 1MiB, such as"
            " 4096 or 64KiB; found 8 (an integer)",
        ),
        (
            "port: /dev/ttyS0\nmax_line_bytes: 2MiB\n",
            "gw.yaml:2: devices[0].max_line_bytes: expected a size from 16 bytes to 1MiB, such as"
            " 4096 or 64KiB; found '2MiB' (a string)",
        ),
        (
            "port: /dev/ttyS0\nmax_line_bytes: lots\n",
            "gw.yaml:2: devices[0].max_line_bytes: expected a size such as 256MiB, 64KB or 4096;"
            " found 'lots' (a string)",
        ),
        (
            "port: /dev/ttyS0\nreopen_max: 10ms\n",
            "gw.yaml:2: devices[0].reopen_max: expected a duration such as 200ms, 5s or 2m"
            " of at least 0.1s; found '10ms' (a string)",
        ),
    ],
)
def test_single_key_problems(yaml_text: str, expected: str) -> None:
    options, problems = read(yaml_text)
    assert options is None
    assert problems == [expected]


def test_csv_needs_columns() -> None:
    options, problems = read("port: /dev/ttyS0\nformat: csv\n")
    assert options is None
    assert problems == [
        "gw.yaml:1: devices[0].columns: expected a list of column names (required with format"
        " csv); found nothing (the key is missing)"
    ]


def test_csv_columns_must_be_unique() -> None:
    options, problems = read("port: /dev/ttyS0\nformat: csv\ncolumns: [a, b, a, c, b]\n")
    assert options is None
    assert problems == [
        "gw.yaml:3: devices[0].columns: expected unique column names; found 'a' repeated,"
        " 'b' repeated"
    ]


def test_csv_column_entries_must_be_strings() -> None:
    options, problems = read("port: /dev/ttyS0\nformat: csv\ncolumns:\n  - a\n  - [b]\n")
    assert options is None
    assert problems == [
        "gw.yaml:5: devices[0].columns[1]: expected a non-empty string; found a list"
    ]


@pytest.mark.parametrize("delimiter", ['"::"', "'\"'", '"\\n"', '""'])
def test_csv_delimiter_must_be_one_usable_character(delimiter: str) -> None:
    options, problems = read(f"port: /dev/ttyS0\nformat: csv\ncolumns: [a]\ndelimiter: {delimiter}\n")
    assert options is None
    assert len(problems) == 1
    assert problems[0].startswith("gw.yaml:4: devices[0].delimiter: expected one character")


def test_tab_delimiter_is_fine() -> None:
    options, problems = read('port: /dev/ttyS0\nformat: csv\ncolumns: [a, b]\ndelimiter: "\\t"\n')
    assert problems == []
    assert options is not None
    assert options.delimiter == "\t"


@pytest.mark.parametrize("line_format", ["json", "kv"])
def test_columns_and_delimiter_are_refused_outside_csv(line_format: str) -> None:
    options, problems = read(
        f"port: /dev/ttyS0\nformat: {line_format}\ncolumns: [a]\ndelimiter: ';'\n"
    )
    assert options is None
    assert problems == [
        f"gw.yaml:3: devices[0].columns: expected no 'columns' with format {line_format}"
        f" ('columns' applies to csv only); found 'columns' given"
        f" (remove 'columns' or set 'format: csv')",
        f"gw.yaml:4: devices[0].delimiter: expected no 'delimiter' with format {line_format}"
        f" ('delimiter' applies to csv only); found 'delimiter' given"
        f" (remove 'delimiter' or set 'format: csv')",
    ]


def test_misspelt_format_does_not_add_cross_field_noise() -> None:
    _, problems = read("port: /dev/ttyS0\nformat: cvs\ncolumns: [a]\n")
    assert len(problems) == 1
    assert "devices[0].format" in problems[0]
    assert "did you mean 'csv'?" in problems[0]


def test_unknown_key_suggests_the_serial_key() -> None:
    _, problems = read("port: /dev/ttyS0\nbaud: 9600\n")
    assert len(problems) == 1
    assert "devices[0].baud:" in problems[0]
    assert "did you mean 'baudrate'?" in problems[0]


def test_every_problem_is_reported_at_once() -> None:
    _, problems = read("baudrate: 0\nformat: csv\nreopen_max: never\n")
    paths = [problem.split(": ")[1] for problem in problems]
    assert paths == [
        "devices[0].port",
        "devices[0].baudrate",
        "devices[0].reopen_max",
        "devices[0].columns",
    ]


@pytest.mark.parametrize(
    ("yaml_text", "field", "value"),
    [
        ("baudrate: 1200\n", "baudrate", 1200),
        ("baudrate: 4000000\n", "baudrate", 4_000_000),
        ("max_line_bytes: 16\n", "max_line_bytes", 16),
        ("max_line_bytes: 1MiB\n", "max_line_bytes", 1024 * 1024),
        ("reopen_max: 100ms\n", "reopen_max", 0.1),
        ("reopen_max: 2m\n", "reopen_max", 120.0),
    ],
)
def test_bounds_are_inclusive(yaml_text: str, field: str, value: object) -> None:
    options, problems = read("port: /dev/ttyAMA0\n" + yaml_text)
    assert problems == []
    assert getattr(options, field) == value
