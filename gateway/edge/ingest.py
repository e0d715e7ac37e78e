"""From device records to readings: the sink every driver writes into.

`Intake` holds what has been read but not yet committed: durable readings
waiting for the next group commit, the bounded in-memory queue of
at-most-once readings, and drop counts by (reason, device, stream). Each
driver gets a `DeviceSink` that maps its records' fields onto its streams,
passing each value through the stream's report-by-exception filter before
it becomes a reading, so a suppressed value never takes a seq (no gap).
Suppressed values are counted under the reason `suppressed`, beside the
drops but not among them: they are not a loss.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from devices.base import Record
from gateway.config.gateway_config import DeviceConfig, GatewayConfig
from gateway.core.clock import UNSYNCED, ClockSource, TrustedClock, stamp
from gateway.core.envelope import Envelope, encode, json_safe
from gateway.core.identity import SequenceCounters
from gateway.core.report_by_exception import ExceptionFilter
from gateway.store.outbox import NewReading
from gateway.store.schema import DropKey

log = logging.getLogger("gateway.ingest")

_MISSING = object()
SUPPRESSED = "suppressed"
# Commit pacing: at low rates a group commit waits for this many durable readings, so that the
# pages it writes whole to the WAL hold more of them, but a reading read is committed within
# COMMIT_BOUND seconds (what a SIGKILL can lose: docs/guarantees.md).
PACE_READINGS = 8
COMMIT_BOUND = 1.0


@dataclass(frozen=True, slots=True)
class Volatile:
    """An at-most-once reading, identified and encoded, held in memory only."""

    device: str
    stream: str
    topic: str
    payload: bytes


class Intake:
    """Readings on their way into the store or the at-most-once queue."""

    def __init__(self, config: GatewayConfig, epoch: str, counters: SequenceCounters, *,
                 clock: ClockSource | None = None) -> None:
        self.clock: ClockSource = clock or TrustedClock()
        self.gateway_id = config.gateway_id
        self.epoch = epoch
        self.counters = counters
        self.commit_batch = config.store.commit_batch
        self.pending: list[NewReading] = []
        self.volatile: deque[Volatile] = deque()
        self.volatile_limit = config.store.at_most_once_buffer
        self.drops: Counter[DropKey] = Counter()
        self.read = 0
        # Cumulative, by reason: input that never became a reading, and readings lost.
        self.rejected_by: Counter[str] = Counter()
        self.dropped_by: Counter[str] = Counter()
        self.suppressed_total = 0
        self._first_seen: float | None = None  # the committer's tick that first saw `pending`
        self.on_batch_full: Callable[[], None] = lambda: None
        self.on_volatile: Callable[[], None] = lambda: None

    def accept(self, reading: NewReading) -> None:
        """Take one reading of a stream."""
        self.read += 1
        if reading.qos > 0:
            self.pending.append(reading)
            if len(self.pending) >= self.commit_batch:
                self.on_batch_full()
            return
        seq = self.counters.next((reading.device, reading.stream))
        payload = encode(Envelope(self.gateway_id, self.epoch, reading.device, reading.stream, seq,
                                  reading.ts, reading.value, reading.unit,
                                  ts_quality=None if reading.taken is None else UNSYNCED))
        if len(self.volatile) >= self.volatile_limit:
            oldest = self.volatile.popleft()
            self.drop("at_most_once_buffer_full", oldest.device, oldest.stream)
        self.volatile.append(Volatile(reading.device, reading.stream, reading.topic, payload))
        self.on_volatile()

    @property
    def dropped_total(self) -> int:
        """Readings lost (not counting rejected input nor suppressed values)."""
        return sum(self.dropped_by.values())

    @property
    def rejected_total(self) -> int:
        """Input lines or fields that never became a reading."""
        return sum(self.rejected_by.values())


    def commit_due(self, now: float, interval: float) -> bool:
        """Whether the committer's tick at `now` (one every `interval`) commits: not while
        fewer than PACE_READINGS readings wait, unless waiting longer would pass COMMIT_BOUND
        (a reading came up to a tick before the first tick saw it, is written up to a tick
        after the last). Acknowledgements wait with the readings: one transaction has both."""
        if not 0 < len(self.pending) < PACE_READINGS:
            self._first_seen = None
            return True
        if self._first_seen is None:
            self._first_seen = now
        if now - self._first_seen + 2 * interval >= COMMIT_BOUND:
            self._first_seen = None
            return True
        return False

    def drop(self, reason: str, device: str, stream: str, count: int = 1) -> None:
        """Count readings dropped for `reason`."""
        self.drops[(reason, device, stream)] += count
        self.count_dropped(reason, count)

    def count_dropped(self, reason: str, count: int) -> None:
        """Add to the totals of the summary line (the store counts them per stream)."""
        self.dropped_by[reason] += count

    def reject(self, reason: str, device: str, stream: str) -> None:
        """Count one piece of input that never became a reading (stored with the drops)."""
        self.drops[(reason, device, stream)] += 1
        self.rejected_by[reason] += 1

    def suppress(self, device: str, stream: str) -> None:
        """Count one reading held back by report by exception (not a drop)."""
        self.drops[(SUPPRESSED, device, stream)] += 1
        self.suppressed_total += 1

    def take(self) -> tuple[list[NewReading], Counter[DropKey]]:
        """Everything waiting for the next commit."""
        pending, drops = self.pending, self.drops
        self.pending, self.drops = [], Counter()
        return pending, drops


class DeviceSink:
    """The `RecordSink` of one device: fields -> stream readings, rejects -> counts."""

    def __init__(self, device: DeviceConfig, intake: Intake, topics: dict[str, str],
                 confirm: frozenset[str] = frozenset()) -> None:
        self.device = device
        self.intake = intake
        self._up: bool | None = None
        self.on_state: Callable[[str, bool], None] | None = None  # (device, up) on a change
        self._reasons_seen: set[str] = set()
        # Per stream, worked out once: its QoS, its topic, whether its rows wait for the
        # consumer's confirmation, and its report-by-exception filter (None: all readings go).
        self._routes = [
            (stream, stream.delivery.qos, topics[stream.name], stream.name in confirm,
             ExceptionFilter(stream.report) if stream.report.active else None)
            for stream in device.streams
        ]

    def record(self, record: Record) -> None:
        """Map one record onto the device's streams."""
        fields = record.fields
        taken = stamp(self.intake.clock, record.ts)  # None once the clock is synchronised
        for stream, qos, topic, confirm, gate in self._routes:
            value = fields.get(stream.field, _MISSING)
            if value is _MISSING:
                if record.partial:
                    continue
                self._reject("missing_field", stream.name,
                             f"stream {stream.name}: field '{stream.field}' not in the record")
                continue
            if not json_safe(value):
                self._reject("bad_value", stream.name,
                             f"stream {stream.name}: value {value!r:.40} is not valid JSON")
                continue
            if gate is not None and not gate.admit(record.ts, value):
                self.intake.suppress(self.device.id, stream.name)
                continue
            self.intake.accept(NewReading(self.device.id, stream.name, qos, record.ts, value,
                                          stream.unit, topic, confirm, taken))

    def rejected(self, reason: str, detail: str) -> None:
        """Count input the driver could not turn into a record."""
        self._reject(reason, "*", detail)

    def _reject(self, reason: str, stream: str, detail: str) -> None:
        self.intake.reject(reason, self.device.id, stream)
        if reason not in self._reasons_seen:
            self._reasons_seen.add(reason)
            log.warning("device=%s dropped input: %s: %s (further drops of this kind are "
                        "counted, see `status`)", self.device.id, reason, detail)

    def device_state(self, up: bool, detail: str) -> None:
        """Log a change of the device's state, once per change."""
        if up == self._up:
            return
        self._up = up
        if self.on_state is not None:
            self.on_state(self.device.id, up)
        if up:
            log.info("device=%s up: %s", self.device.id, detail)
        else:
            log.warning("device=%s down: %s; retrying", self.device.id, detail)

