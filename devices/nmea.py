"""The `nmea` driver: a GPS receiver speaking NMEA 0183 on a serial port.

Data layout. One sentence per line, ASCII, `$` + talker (2 letters, `GP`,
`GN`, `GL`, ...) + formatter (3 letters) + comma-separated fields + `*` +
two hex digits, the XOR of every byte between `$` and `*`:

    $GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76
    $GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43

Lines are framed by the serial driver's `LineFramer` and read by the same
port loop; `parse_nmea` (pure) verifies the checksum itself, then lets
pynmeagps decode the fields of the sentences used here (other sentence
types, GSV and friends, are skipped silently):

| sentence | record fields |
|---|---|
| GGA | `latitude_deg`, `longitude_deg` (WGS84, south/west negative), `altitude_m` (above |
| | mean sea level), `fix_quality` (0 none, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, |
| | 6 estimated), `satellites`, `hdop` |
| RMC | `latitude_deg`, `longitude_deg`, `speed_kmh`, `course_deg`, `fix_valid` (status A) |
| VTG | `speed_kmh`, `course_deg` |
| GSA | `fix_type` (1 none, 2 2D, 3 3D), `pdop`, `hdop`, `vdop` |

Position fields are left out while the receiver has no fix (empty fields).
Each sentence is its own partial record. Rejects: `bad_checksum` (missing
or wrong `*HH`), `bad_nmea` (not a sentence, or fields pynmeagps cannot
decode), `invalid_utf8`, plus the framer's `line_too_long`/`line_truncated`.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from devices.base import DriverRun, RecordSink, Rejected, excerpt
from devices.serial.framing import first_line
from devices.serial.line_formats import Fields, ParseResult
from devices.serial.port import SerialOptions, read_baudrate, read_lines_forever, read_port
from gateway.config.reader import MapReader
from gateway.core.extras import GPS

BAD_CHECKSUM = "bad_checksum"
BAD_NMEA = "bad_nmea"
INVALID_UTF8 = "invalid_utf8"
KNOTS_TO_KMH = 1.852
MAX_LINE_BYTES = 1024  # the standard says 82 characters; proprietary sentences run longer

FIELDS = frozenset({
    "latitude_deg", "longitude_deg", "altitude_m", "fix_quality", "satellites", "hdop",
    "speed_kmh", "course_deg", "fix_valid", "fix_type", "pdop", "vdop",
})
_SENTENCE = re.compile(r"\$([A-Z][A-Z0-9]{4,5}),([\x20-\x7e]*)\*([0-9A-Fa-f]{2})")
_USED = ("GGA", "RMC", "VTG", "GSA")
_BAUDRATES = (4800, 9600, 19200, 38400, 57600, 115200)


@functools.cache
def _decoder() -> tuple[Any, tuple[type[Exception], ...]]:
    """pynmeagps' parser and what it raises for a sentence it cannot decode.

    Loaded with the first sentence, so a gateway without a GPS does not carry it.
    """
    try:
        from pynmeagps import NMEAReader, exceptions  # noqa: PLC0415
    except ImportError as exc:
        raise GPS.error("driver nmea", exc) from exc

    return NMEAReader.parse, (exceptions.NMEAParseError, exceptions.NMEAMessageError,
                              exceptions.NMEATypeError, ValueError, IndexError, TypeError)


@dataclass(frozen=True)
class NmeaOptions:
    """The GPS receiver's port."""

    port: str
    baudrate: int = 9600
    reopen_max: float = 30.0


def checksum(body: str) -> int:
    """The NMEA checksum: XOR of the characters between `$` and `*`."""
    value = 0
    for char in body.encode("ascii"):
        value ^= char
    return value


def parse_nmea(line: bytes) -> ParseResult:
    """Record fields from one NMEA sentence.

    Args:
        line: One line without its terminator.

    Returns:
        The sentence's fields, a `Rejected`, or None for a blank line or a
        well-formed sentence of a type not used here.
    """
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError as exc:
        return Rejected(INVALID_UTF8, f"non-ASCII byte at offset {exc.start}: {excerpt(line)}")
    text = text.strip()
    if not text:
        return None
    if not text.startswith("$"):
        return Rejected(BAD_NMEA, f"not an NMEA sentence: {excerpt(text)}")
    if "*" not in text:
        return Rejected(BAD_CHECKSUM, f"no *HH checksum: {excerpt(text)}")
    match = _SENTENCE.fullmatch(text)
    if match is None:
        return Rejected(BAD_NMEA, f"not an NMEA sentence: {excerpt(text)}")
    address, fields, given = match.groups()
    expected = checksum(f"{address},{fields}")
    if expected != int(given, 16):
        return Rejected(BAD_CHECKSUM,
                        f"checksum {given.upper()} should be {expected:02X}: {excerpt(text)}")
    kind = address[2:] if len(address) == 5 else address[-3:]
    if kind not in _USED:
        return None
    parse, errors = _decoder()
    try:
        message: Any = parse(line.strip(), validate=0)
    except errors as exc:
        return Rejected(BAD_NMEA, f"{kind}: {first_line(exc)}: {excerpt(text)}")
    if message is None:
        return Rejected(BAD_NMEA, f"{kind}: not decodable: {excerpt(text)}")
    return _FIELDS_OF[kind](message)


def _gga(msg: Any) -> Fields:
    fields: Fields = {"fix_quality": _int(_get(msg, "quality")),
                      "satellites": _int(_get(msg, "numSV"))}
    if fields["fix_quality"]:
        fields.update(_position(msg))
        _put(fields, "altitude_m", _get(msg, "alt"))
    _put(fields, "hdop", _get(msg, "HDOP"))
    return _drop_none(fields)


def _rmc(msg: Any) -> Fields:
    valid = _get(msg, "status") == "A"
    fields: Fields = {"fix_valid": valid}
    if valid:
        fields.update(_position(msg))
        knots = _get(msg, "spd")
        if isinstance(knots, int | float) and math.isfinite(knots):
            fields["speed_kmh"] = round(knots * KNOTS_TO_KMH, 3)
        _put(fields, "course_deg", _get(msg, "cog"))
    return _drop_none(fields)


def _vtg(msg: Any) -> Fields:
    fields: Fields = {}
    _put(fields, "speed_kmh", _get(msg, "sogk"))
    _put(fields, "course_deg", _get(msg, "cogt"))
    return fields


def _gsa(msg: Any) -> Fields:
    fields: Fields = {"fix_type": _int(_get(msg, "navMode"))}
    for name in ("pdop", "hdop", "vdop"):
        _put(fields, name, _get(msg, name.upper()))
    return _drop_none(fields)


_FIELDS_OF = {"GGA": _gga, "RMC": _rmc, "VTG": _vtg, "GSA": _gsa}


def _position(msg: Any) -> Fields:
    """Latitude and longitude when both are numbers within range."""
    lat, lon = _get(msg, "lat"), _get(msg, "lon")
    if isinstance(lat, int | float) and isinstance(lon, int | float) \
            and -90 <= lat <= 90 and -180 <= lon <= 180:
        return {"latitude_deg": round(float(lat), 8), "longitude_deg": round(float(lon), 8)}
    return {}


def _get(msg: Any, name: str) -> Any:
    """A decoded field, or None when the sentence was too short to have it."""
    return getattr(msg, name, None)


def _put(fields: Fields, name: str, value: object) -> None:
    """Set a numeric field; pynmeagps gives '' for an empty one."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        fields[name] = value


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _drop_none(fields: Fields) -> Fields:
    return {key: value for key, value in fields.items() if value is not None}


def read_options(reader: MapReader) -> NmeaOptions | None:
    """Read the nmea driver's keys: `port`, `baudrate`, `reopen_max`.

    Args:
        reader: The device's mapping; problems are recorded on it.

    Returns:
        The options, or None when any of these keys had a problem.
    """
    before = len(reader.problems)
    port = read_port(reader, "/dev/ttyACM0")
    baudrate = read_baudrate(reader, _BAUDRATES)
    reopen_max = reader.duration("reopen_max", default=30.0, minimum=0.1)
    if len(reader.problems) > before or port is None or baudrate is None:
        return None
    return NmeaOptions(port, baudrate, reopen_max)


def offered_fields(options: NmeaOptions) -> frozenset[str]:
    """Every field any used sentence can fill."""
    return FIELDS


def start(device_id: str, options: NmeaOptions) -> DriverRun:
    """Prepare the reader of one GPS receiver.

    Args:
        device_id: The device's id (the sink knows it; kept for the table's signature).
        options: The device's validated options.

    Returns:
        A coroutine function that reads sentences until cancelled.
    """
    serial = SerialOptions(port=options.port, baudrate=options.baudrate,
                           max_line_bytes=MAX_LINE_BYTES, reopen_max=options.reopen_max)

    async def run(sink: RecordSink) -> None:
        await read_lines_forever(serial, parse_nmea, sink, partial=True)

    return run
