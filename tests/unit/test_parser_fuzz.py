"""Every parser under random and mutated input: nothing escapes, every reject has a reason.

Property tests (hypothesis) for the line framer, the json/csv/kv line
parsers, NMEA sentences, Modbus decoding, w1_slave text and BME280 raw
registers. A reject must be a `Rejected` whose reason is one the parser
documents; anything else (an exception, another type) fails the test.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.base import Rejected
from devices.bme280 import compensation as comp
from devices.modbus.decoding import BAD_RESPONSE, BAD_VALUE, Decoding, decode_bits, decode_registers
from devices.nmea import BAD_CHECKSUM, BAD_NMEA, checksum, parse_nmea
from devices.serial import port as serial_port
from devices.serial.framing import LINE_TOO_LONG, Line, LineFramer
from devices.serial.line_formats import (
    BAD_CSV,
    BAD_JSON,
    BAD_KV,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    parse_json,
    parse_kv,
    parser_for,
)
from devices.w1 import W1_BAD_FORMAT, W1_CRC_ERROR, W1_POWER_ON_VALUE, parse_w1_slave
from gateway.core.backoff import Backoff
from tests.support.recording_sink import RecordingSink

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOOD_LINES = [
    b'{"temp_c": 21.5, "alarm": false}', b"21.5,40,gh-1", b"rain_mm=0.2 wind_ms=3.1",
    b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76",
    b"$GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43",
    b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48", b"$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39",
]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes] = GOOD_LINES) -> bytes:
    """A good line with random bytes flipped, inserted or deleted."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(("flip", "insert", "delete")))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data.insert(at, draw(st.integers(0, 255)))
        elif data:
            del data[at]
    return bytes(data)


LINES = st.one_of(st.binary(max_size=200), mutated(),
                  st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass")))


def check(result: object, reasons: set[str], allowed: tuple[type, ...] = (dict,)) -> None:
    if isinstance(result, Rejected):
        assert result.reason in reasons, result
        assert result.detail
    else:
        assert result is None or isinstance(result, allowed), result


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=20), st.integers(16, 64))
def test_framer_bounded_and_never_raises(chunks: list[bytes], cap: int) -> None:
    framer = LineFramer(cap)
    for chunk in chunks:
        for event in framer.feed(chunk):
            if isinstance(event, Line):
                assert len(event.data) <= cap and b"\n" not in event.data
            else:
                assert event.reason == LINE_TOO_LONG
        assert framer.buffered_bytes <= cap + 2
    rest = framer.reset()
    assert rest is None or rest.reason == "line_truncated"


@FUZZ
@given(LINES)
def test_json_parser(line: bytes) -> None:
    check(parse_json(line), {INVALID_UTF8, BAD_JSON, NOT_AN_OBJECT})


@FUZZ
@given(LINES, st.sampled_from([",", ";", "\t", "|"]))
def test_csv_parser(line: bytes, delimiter: str) -> None:
    check(parser_for("csv", ("a", "b", "c"), delimiter)(line), {INVALID_UTF8, BAD_CSV})


@FUZZ
@given(LINES)
def test_kv_parser(line: bytes) -> None:
    check(parse_kv(line), {INVALID_UTF8, BAD_KV})


@FUZZ
@given(LINES)
def test_nmea_parser(line: bytes) -> None:
    check(parse_nmea(line), {INVALID_UTF8, BAD_CHECKSUM, BAD_NMEA})


@st.composite
def checksummed_nmea(draw: st.DrawFn) -> bytes:
    """Sentences with random fields but a correct checksum: they reach pynmeagps."""
    kind = draw(st.sampled_from(("GGA", "RMC", "VTG", "GSA")))
    fields = draw(st.lists(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e,
                                                 exclude_characters="*$,"), max_size=12),
                           max_size=20))
    body = ",".join([f"{draw(st.sampled_from(('GP', 'GN', 'GL')))}{kind}", *fields])
    return f"${body}*{checksum(body):02X}".encode()


@FUZZ
@given(checksummed_nmea())
def test_nmea_fields_decoded_or_rejected(line: bytes) -> None:
    result = parse_nmea(line)
    check(result, {BAD_NMEA})
    if isinstance(result, dict):
        assert all(isinstance(v, bool | int | float) for v in result.values()), result


@FUZZ
@given(st.lists(st.integers(-5, 70000), max_size=4),
       st.sampled_from(["int16", "uint16", "int32", "uint32", "float32"]),
       st.sampled_from(["big", "little"]), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_modbus_decoding(words: list[int], kind: str, order: str, scale: float, offset: float) -> None:
    result = decode_registers(words, Decoding(kind, order, scale, offset))
    check(result, {BAD_RESPONSE, BAD_VALUE}, (int, float))
    check(decode_bits([bool(w % 2) for w in words]), {BAD_RESPONSE}, (bool,))


W1_GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"


@FUZZ
@given(st.one_of(st.text(max_size=120), mutated([W1_GOOD.encode()]).map(
    lambda b: b.decode("ascii", "replace"))))
def test_w1_text(text: str) -> None:
    check(parse_w1_slave(text), {W1_BAD_FORMAT, W1_CRC_ERROR, W1_POWER_ON_VALUE}, (float,))


CAL = comp.parse_calibration(
    bytes.fromhex("706b43678cfc7d8e43d6d00bf80a8c00f9ff8c3c08c67017") + b"\x00\x4b",
    bytes.fromhex("6a01001331031e"))


@FUZZ
@given(st.binary(min_size=0, max_size=10), st.binary(min_size=26, max_size=26),
       st.binary(min_size=7, max_size=7))
def test_bme280_raw_and_calibration(data: bytes, block0: bytes, block1: bytes) -> None:
    assert isinstance(CAL, comp.Calibration)
    raw = comp.decode_raw(data)
    check(raw, {comp.BME280_SKIPPED}, (comp.RawReading,))
    if isinstance(raw, comp.RawReading):
        check(comp.compensate(CAL, raw), {comp.BME280_OUT_OF_RANGE})
    calibration = comp.parse_calibration(block0, block1)
    check(calibration, {comp.BME280_BAD_CALIBRATION}, (comp.Calibration,))
    if isinstance(calibration, comp.Calibration) and isinstance(raw, comp.RawReading):
        check(comp.compensate(calibration, raw), {comp.BME280_OUT_OF_RANGE})


@FUZZ
@given(st.lists(LINES, max_size=30), st.integers(16, 80), st.data(),
       st.sampled_from(["json", "csv", "kv", "nmea"]))
def test_serial_pump_counts_every_rejected_line_with_its_reason(
        lines: list[bytes], cap: int, data: st.DataObject, fmt: str) -> None:
    """The serial driver's read loop over random chunkings of random lines, against an oracle.

    The oracle splits the same bytes on newlines and parses each line on its
    own; the driver must deliver exactly those records and count exactly those
    rejects, whatever the chunk boundaries.
    """
    parse = parse_nmea if fmt == "nmea" else parser_for(fmt, ("a", "b", "c"))
    stream = b"".join(line.replace(b"\n", b"") + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    expected_records: list[object] = []
    expected_rejects: Counter[str] = Counter()
    for raw_line in stream.split(b"\n")[:-1]:
        line = raw_line.removesuffix(b"\r")
        if len(line) > cap:
            expected_rejects[LINE_TOO_LONG] += 1
            continue
        result = parse(line)
        if isinstance(result, Rejected):
            expected_rejects[result.reason] += 1
        elif result is not None:
            expected_records.append(result)

    sink = RecordingSink()

    async def pump() -> None:
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        why = await serial_port._pump(reader, LineFramer(cap), parse, sink, Backoff(), False)
        assert why == "end of input"

    asyncio.run(pump())
    assert sink.fields == expected_records
    assert sink.reject_counts == expected_rejects
