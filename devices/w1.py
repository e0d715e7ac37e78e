"""The `w1` driver: DS18B20 temperature probes on the kernel's 1-Wire bus.

Data layout. With the `w1-gpio` and `w1-therm` kernel modules loaded, each
probe appears as `/sys/bus/w1/devices/28-<serial>/w1_slave` (family code
0x28 is the DS18B20). Reading the file makes the kernel start a conversion
(up to 750 ms at 12 bits) and returns two lines: the nine scratchpad bytes
in hex, the kernel's CRC verdict, then the bytes again and the temperature
in thousandths of a degree Celsius:

    72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
    72 01 4b 46 7f ff 0e 10 57 t=23125

`parse_w1_slave` (pure) turns that text into degrees Celsius or a reject:

- `w1_crc_error`: the first line ends in `NO` (a noisy bus; retry next poll);
- `w1_power_on_value`: `t=85000`, the DS18B20's power-on reset value, read
  when a probe lost power or a conversion never ran;
- `w1_bad_format`: anything else (truncated or garbled text).

A probe whose directory is missing (unplugged, or the id mistyped) is
counted as `w1_absent` at every poll and logged once until it is back.
Each poll emits one partial record with a field per probe read correctly.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from devices.base import DriverRun, Record, RecordSink, Rejected, excerpt
from devices.tick_schedule import TickSchedule
from gateway.config.reader import MapReader, describe

log = logging.getLogger("devices.w1")

DEFAULT_BASE_DIR = "/sys/bus/w1/devices"
W1_CRC_ERROR = "w1_crc_error"
W1_POWER_ON_VALUE = "w1_power_on_value"
W1_BAD_FORMAT = "w1_bad_format"
W1_ABSENT = "w1_absent"

POWER_ON_MILLIDEGREES = 85000
_PROBE_ID = re.compile(r"28-[0-9a-f]{12}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_BYTES = r"(?:[0-9a-f]{2} ){9}"
_CRC_LINE = re.compile(_BYTES + r": crc=[0-9a-f]{2} (YES|NO)")
_TEMP_LINE = re.compile(_BYTES + r"t=(-?[0-9]{1,6})")
# The DS18B20 measures -55 to +125 °C; anything outside is garbage.
_RANGE_MILLIDEGREES = (-55000, 125000)


@dataclass(frozen=True)
class Probe:
    """One DS18B20: its 1-Wire id and the record field it fills."""

    id: str
    field: str


@dataclass(frozen=True)
class W1Options:
    """The probes to read, how often, and where sysfs is (a tmp dir in tests)."""

    probes: tuple[Probe, ...]
    interval: float = 10.0
    base_dir: str = DEFAULT_BASE_DIR


def parse_w1_slave(text: str) -> float | Rejected:
    """Degrees Celsius from the text of one `w1_slave` file.

    Args:
        text: The whole file as read.

    Returns:
        The temperature, or a `Rejected` saying why the text is unusable.
    """
    lines = text.strip().splitlines()
    if len(lines) != 2:
        return Rejected(W1_BAD_FORMAT, f"expected 2 lines, found {len(lines)}: {excerpt(text)}")
    crc = _CRC_LINE.fullmatch(lines[0].strip())
    if crc is None:
        return Rejected(W1_BAD_FORMAT, f"no CRC verdict: {excerpt(lines[0])}")
    if crc.group(1) != "YES":
        return Rejected(W1_CRC_ERROR, f"kernel reports a CRC mismatch: {excerpt(lines[0])}")
    temp = _TEMP_LINE.fullmatch(lines[1].strip())
    if temp is None:
        return Rejected(W1_BAD_FORMAT, f"no t=<millidegrees>: {excerpt(lines[1])}")
    milli = int(temp.group(1))
    if milli == POWER_ON_MILLIDEGREES:
        return Rejected(W1_POWER_ON_VALUE, "t=85000 is the power-on reset value, not a reading")
    low, high = _RANGE_MILLIDEGREES
    if not low <= milli <= high:
        return Rejected(W1_BAD_FORMAT, f"t={milli} is outside the DS18B20's -55..125 °C")
    return milli / 1000.0


def read_options(reader: MapReader) -> W1Options | None:
    """Read the w1 driver's keys: `probes` (id + field each), `interval`, `base_dir`.

    Args:
        reader: The device's mapping; problems are recorded on it.

    Returns:
        The options, or None when any of these keys had a problem.
    """
    before = len(reader.problems)
    interval = reader.duration("interval", default=10.0, minimum=1.0, maximum=86400.0)
    base_dir = reader.string("base_dir", default=DEFAULT_BASE_DIR, expected="a directory path")
    probes: list[Probe] = []
    seen: dict[str, str] = {}
    for path, located in reader.items("probes", required=True):
        child = reader.child(path, located)
        if child is None:
            continue
        probe_id = child.string("id", required=True, pattern=_PROBE_ID,
                                expected="a DS18B20 id such as 28-0316a2795aff")
        field = child.string("field", required=True, pattern=_FIELD,
                             expected="a field name such as soil_temp_c")
        child.finish()
        if probe_id is None or field is None:
            continue
        if field in seen:
            child.problem("field", "a field name used once per device", describe(field),
                          f"already used by probe {seen[field]}")
            continue
        seen[field] = probe_id
        probes.append(Probe(probe_id, field))
    raw = reader.raw("probes")
    if raw is not None and isinstance(raw.value, list) and not raw.value:
        reader.problem("probes", "at least one probe", "an empty list")
    if len(reader.problems) > before or base_dir is None:
        return None
    return W1Options(tuple(probes), interval, base_dir)


def offered_fields(options: W1Options) -> frozenset[str]:
    """The probes' fields."""
    return frozenset(probe.field for probe in options.probes)


def start(device_id: str, options: W1Options) -> DriverRun:
    """Prepare the poller of one set of probes.

    Args:
        device_id: The device's id (the sink knows it; kept for the table's signature).
        options: The device's validated options.

    Returns:
        A coroutine function that polls until cancelled.
    """

    async def run(sink: RecordSink) -> None:
        poller = W1Poller(options, sink, device_id)
        loop = asyncio.get_running_loop()
        schedule = TickSchedule(options.interval, loop.time())
        sink.device_state(True, f"reading {len(options.probes)} probe(s) under {options.base_dir}")
        while True:
            fields = await asyncio.to_thread(poller.poll)
            if fields:
                sink.record(Record(ts=time.time(), fields=fields, partial=True))
            await asyncio.sleep(schedule.wait_after_tick(loop.time()))

    return run


class W1Poller:
    """Reads every probe once per `poll()`; remembers which are absent to log once."""

    def __init__(self, options: W1Options, sink: RecordSink, device_id: str = "w1") -> None:
        """Create the poller.

        Args:
            options: The probes and the sysfs base directory.
            sink: Where rejects are counted.
            device_id: The device's id, for log lines.
        """
        self.device_id = device_id
        self.options = options
        self.sink = sink
        self.absent: set[str] = set()

    def poll(self) -> dict[str, float]:
        """Read each probe; count and skip the ones that fail.

        Returns:
            `{field: degrees Celsius}` for the probes read correctly.
        """
        fields: dict[str, float] = {}
        base = Path(self.options.base_dir)
        for probe in self.options.probes:
            path = base / probe.id / "w1_slave"
            try:
                text = path.read_text(encoding="ascii", errors="replace")
            except FileNotFoundError:
                self._absent(probe, path)
                continue
            except OSError as exc:  # the kernel returns EIO when the bus is shorted
                self.sink.rejected(W1_BAD_FORMAT, f"probe {probe.id}: cannot read {path}: {exc}")
                continue
            if probe.id in self.absent:
                self.absent.discard(probe.id)
                log.info("device=%s probe=%s back at %s", self.device_id, probe.id, path)
            result = parse_w1_slave(text)
            if isinstance(result, Rejected):
                self.sink.rejected(result.reason, f"probe {probe.id}: {result.detail}")
                continue
            fields[probe.field] = result
        return fields

    def _absent(self, probe: Probe, path: Path) -> None:
        self.sink.rejected(W1_ABSENT, f"probe {probe.id}: {path} does not exist")
        if probe.id not in self.absent:
            self.absent.add(probe.id)
            log.warning("device=%s probe=%s absent: %s does not exist (unplugged, or the id is "
                        "wrong); counted as w1_absent until it is back", self.device_id, probe.id,
                        path)
