"""The serial driver: a line-oriented sensor on a serial port.

This module owns the serial device's config keys (read through the shared
`MapReader`) and the runtime loop: open the port, frame and parse lines,
hand records and rejects to the sink, and when the port goes away (unplug,
read error) report it once and keep reopening with capped backoff until the
driver is cancelled. Framing and parsing live in the pure modules
`devices.serial.framing` and `devices.serial.line_formats`; only the port is I/O here.

Opening a port flushes its input buffer: bytes the device sent before the
port was open are gone, and the first line read may be a tail (counted as a
reject like any other garbage).
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import time
from collections import Counter
from dataclasses import dataclass

import serial_asyncio_fast

from devices.base import DeviceState, DriverRun, Record, RecordSink, Rejected
from devices.serial.framing import LineFramer
from devices.serial.line_formats import FORBIDDEN_DELIMITERS, FORMATS, LineParser, parser_for
from gateway.config.reader import MapReader, describe
from gateway.core.backoff import Backoff

PORT_PATH = re.compile(r"/\S.*")
_READ_CHUNK = 4096
_CLOSE_TIMEOUT = 2.0
_HINTS = {
    errno.EACCES: " (is the service user in the 'dialout' group?)",
    errno.EBUSY: " (is another program using the port?)",
}


@dataclass(frozen=True)
class SerialOptions:
    """How to read one serial device, validated."""

    port: str
    baudrate: int = 9600
    format: str = "json"
    columns: tuple[str, ...] = ()
    delimiter: str = ","
    max_line_bytes: int = 4096
    reopen_max: float = 30.0


def read_options(reader: MapReader) -> SerialOptions | None:
    """Read the serial driver's keys from one device mapping.

    Every problem found is recorded on `reader`; the gateway's own keys
    (`id`, `driver`, `streams`) are left to the caller.

    Args:
        reader: The device's mapping.

    Returns:
        The options, or None when any of these keys had a problem.
    """
    problems_before = len(reader.problems)
    port = read_port(reader)
    # Bounds checked here, not by MapReader, to say what a baud rate looks like.
    baudrate = _in_range(reader, "baudrate", reader.integer("baudrate", default=9600),
                         low=1200, high=4_000_000,
                         expected="a baud rate from 1200 to 4000000, such as 9600 or 115200")
    format_problems = len(reader.problems)
    line_format = reader.choice("format", FORMATS, default="json")
    format_ok = len(reader.problems) == format_problems
    columns = reader.string_list("columns")
    delimiter = reader.string("delimiter")
    max_line_bytes = _in_range(reader, "max_line_bytes",
                               reader.size("max_line_bytes", default=4096),
                               low=16, high=1024 * 1024,
                               expected="a size from 16 bytes to 1MiB, such as 4096 or 64KiB")
    reopen_max = reader.duration("reopen_max", default=30.0, minimum=0.1)
    if format_ok:
        columns, delimiter = _check_csv_keys(reader, line_format, columns, delimiter)

    if (
        len(reader.problems) > problems_before
        or port is None
        or baudrate is None
        or max_line_bytes is None
    ):
        return None
    return SerialOptions(
        port=port,
        baudrate=baudrate,
        format=line_format or "json",
        columns=tuple(columns or ()),
        delimiter=delimiter or ",",
        max_line_bytes=max_line_bytes,
        reopen_max=reopen_max,
    )


def offered_fields(options: SerialOptions) -> frozenset[str] | None:
    """The record fields this device can produce.

    Args:
        options: The device's options.

    Returns:
        The csv column names, or None (any field) for json and kv lines.
    """
    if options.format == "csv":
        return frozenset(options.columns)
    return None


def start(device_id: str, options: SerialOptions) -> DriverRun:
    """Prepare the reader for one serial device.

    Args:
        device_id: The device's id from the config (the sink already knows it;
            accepted for the driver table's uniform signature).
        options: The device's validated options.

    Returns:
        A coroutine function that reads until cancelled, delivering to its sink.
    """
    parse = parser_for(options.format, options.columns, options.delimiter)

    async def run(sink: RecordSink) -> None:
        await read_lines_forever(options, parse, sink)

    return run


async def read_lines_forever(
    options: SerialOptions, parse: LineParser, sink: RecordSink, *, partial: bool = False
) -> None:
    """Open, read, and reopen the port until cancelled.

    Args:
        options: The port, speed, line cap and reopen backoff.
        parse: Turns one line into fields, a reject, or None (skipped).
        sink: Where records and rejects go.
        partial: Whether each line's record carries only some of the device's
            fields (as with NMEA sentences).
    """
    path = options.port
    backoff = Backoff(base=0.2, cap=options.reopen_max)
    framer = LineFramer(options.max_line_bytes)
    state = DeviceState(sink)
    while True:
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=path, baudrate=options.baudrate
            )
        # SerialException is an OSError; pyserial raises ValueError for unusable settings.
        except (OSError, ValueError) as exc:
            state.report(False, f"cannot open {path}: {_describe(exc)}")
            await asyncio.sleep(backoff.next_delay())
            continue
        state.report(True, f"opened {path}")
        try:
            why = await _pump(reader, framer, parse, sink, backoff, partial)
        finally:
            await _close(writer)
            truncated = framer.reset()
            if truncated is not None:
                sink.rejected(truncated.reason, truncated.detail)
        state.report(False, f"lost {path}: {why}")
        # Also after a loss: a port that opens and fails at once must not spin.
        await asyncio.sleep(backoff.next_delay())


async def _pump(
    reader: asyncio.StreamReader, framer: LineFramer, parse: LineParser, sink: RecordSink,
    backoff: Backoff, partial: bool,
) -> str:
    """Deliver lines until the port fails; return why it failed."""
    while True:
        try:
            chunk = await reader.read(_READ_CHUNK)
        except OSError as exc:
            return _describe(exc)
        if not chunk:
            return "end of input"
        # Only a port that delivers data has proven itself: one that opens and
        # fails at once keeps backing off instead of flapping.
        backoff.reset()
        for event in framer.feed(chunk):
            if isinstance(event, Rejected):
                sink.rejected(event.reason, event.detail)
                continue
            result = parse(event.data)
            if isinstance(result, Rejected):
                sink.rejected(result.reason, result.detail)
            elif result is not None:
                sink.record(Record(ts=time.time(), fields=result, partial=partial))


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the port and wait, briefly, until pyserial has released it."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), _CLOSE_TIMEOUT)
    except (OSError, TimeoutError):
        # wait_closed re-raises the read error already reported as the loss.
        return


def read_port(reader: MapReader, example: str = "/dev/ttyUSB0") -> str | None:
    """The required `port` key of a serial device: an absolute device path."""
    return reader.string("port", required=True, pattern=PORT_PATH,
                         expected=f"an absolute device path such as {example}")


def read_baudrate(reader: MapReader, allowed: tuple[int, ...]) -> int | None:
    """The `baudrate` key (default 9600) of a device that speaks only the rates `allowed`."""
    baudrate = reader.integer("baudrate", default=9600)
    if baudrate is not None and baudrate not in allowed:
        reader.problem("baudrate", "one of " + ", ".join(map(str, allowed)),
                       f"{baudrate} (an integer)")
    return baudrate


def _in_range(
    reader: MapReader, key: str, value: int | None, *, low: int, high: int, expected: str
) -> int | None:
    """`value` when within [low, high]; otherwise report it against `expected`."""
    if value is None or low <= value <= high:
        return value
    found = reader.raw(key)
    reader.problem(key, expected, describe(found.value if found is not None else value))
    return None


def _check_csv_keys(reader: MapReader, line_format: str | None, columns: list[str] | None,
                    delimiter: str | None) -> tuple[list[str] | None, str | None]:
    """`columns` and `delimiter` checked for csv, and reported as out of place otherwise."""
    if line_format == "csv":
        return _check_columns(reader, columns), _check_delimiter(reader, delimiter)
    for key in ("columns", "delimiter"):
        found = reader.raw(key)
        if found is not None and found.value is not None:
            reader.problem(
                key,
                f"no '{key}' with format {line_format} ('{key}' applies to csv only)",
                f"'{key}' given",
                hint=f"remove '{key}' or set 'format: csv'",
            )
    return columns, delimiter


def _check_columns(reader: MapReader, columns: list[str] | None) -> list[str] | None:
    """Columns are required for csv and must be unique."""
    if columns is None:
        found = reader.raw("columns")
        if found is None or found.value is None:
            reader.problem(
                "columns",
                "a list of column names (required with format csv)",
                "nothing (the key is missing)",
            )
        return None
    repeated = [name for name, count in Counter(columns).items() if count > 1]
    if repeated:
        reader.problem(
            "columns", "unique column names", ", ".join(f"{name!r} repeated" for name in repeated)
        )
        return None
    return columns


def _check_delimiter(reader: MapReader, delimiter: str | None) -> str | None:
    """The csv delimiter is one character other than a quote or newline."""
    if delimiter is None:
        return None
    if len(delimiter) != 1 or delimiter in FORBIDDEN_DELIMITERS:
        reader.problem(
            "delimiter",
            "one character other than a double quote or newline, such as ',' or ';'",
            repr(delimiter),
        )
        return None
    return delimiter


def _describe(exc: BaseException) -> str:
    """A short reason for a port error, with a hint for the usual causes."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is not None:
        return os.strerror(code) + _HINTS.get(code, "")
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
