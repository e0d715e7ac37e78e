"""GPIO: debounce and counting (pure), and the driver over a fake line request.

gpio-sim is not available here, so the driver reads a fake `LineRequest`
whose fd is a real pipe (readable while events wait, as the kernel's is) and
whose events are real `gpiod.EdgeEvent` objects with bouncing timestamps.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gpiod
import pytest
from gpiod.line import Value

from devices.gpio.driver import GpioOptions, read_line_forever, start
from devices.gpio.logic import Debouncer, PulseCounter, Transition, wall_time, wanted
from tests.support.recording_sink import RecordingSink, running
from tests.support.waiting import wait_for

MS = 1_000_000
RISING = gpiod.EdgeEvent.Type.RISING_EDGE.value
FALLING = gpiod.EdgeEvent.Type.FALLING_EDGE.value


def feed_all(debouncer: Debouncer, edges: list[tuple[bool, int]], end_ns: int) -> list[Transition]:
    out: list[Transition] = []
    for active, ts in edges:
        out += debouncer.feed(active, ts)
    return out + debouncer.flush(end_ns)


def test_a_bouncing_press_is_one_transition_stamped_at_its_last_edge() -> None:
    edges = [(True, 0), (False, 1 * MS), (True, 2 * MS), (False, 3 * MS), (True, 4 * MS)]
    debouncer = Debouncer(10 * MS)
    assert feed_all(debouncer, edges, 100 * MS) == [Transition(True, 4 * MS)]
    assert debouncer.bounces == 2  # the two rising levels that did not hold


def test_a_glitch_shorter_than_the_debounce_is_ignored() -> None:
    debouncer = Debouncer(10 * MS)
    assert feed_all(debouncer, [(True, 0), (False, 3 * MS)], 100 * MS) == []
    assert debouncer.level is False


def test_nothing_is_confirmed_before_the_level_held() -> None:
    debouncer = Debouncer(10 * MS)
    assert debouncer.feed(True, 0) == []
    assert debouncer.flush(9 * MS) == []
    assert debouncer.deadline_ns() == 10 * MS
    assert debouncer.flush(10 * MS) == [Transition(True, 0)]
    assert debouncer.deadline_ns() is None


def test_press_and_release_each_confirmed_by_the_next_edge() -> None:
    debouncer = Debouncer(5 * MS)
    assert debouncer.feed(True, 0) == []
    assert debouncer.feed(False, 50 * MS) == [Transition(True, 0)]
    assert debouncer.flush(60 * MS) == [Transition(False, 50 * MS)]


def test_zero_debounce_passes_every_change() -> None:
    debouncer = Debouncer(0)
    assert feed_all(debouncer, [(True, 0), (False, 1), (True, 2)], 3) == [
        Transition(True, 0), Transition(False, 1), Transition(True, 2)]


def test_wanted_and_counter_and_clock() -> None:
    assert wanted(Transition(True, 0), "rising") and not wanted(Transition(True, 0), "falling")
    assert wanted(Transition(False, 0), "both")
    counter = PulseCounter()
    counter.add(3)
    assert counter.close_interval(2.0) == (3, 3, 1.5)
    counter.add(1)
    assert counter.close_interval(0.5) == (1, 4, 2.0)
    assert wall_time(9_000_000_000, 10_000_000_000, 1000.0) == 999.0
    with pytest.raises(ValueError, match="negative"):
        Debouncer(-1)


class FakeLineRequest:
    """Quacks like `gpiod.LineRequest`: a pipe fd, a queue of real EdgeEvents, a level."""

    def __init__(self, level: bool = False) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        self._lock = threading.Lock()
        self._events: list[gpiod.EdgeEvent] = []
        self.level = level
        # The driver reads the level once it watches the fd: edges sent before that would
        # already be in the level it starts from (a race the tests must not run into).
        self.level_reads = 0
        self.released = False
        self._seq = 0

    def emit(self, edges: list[tuple[bool, int]], skip: int = 0) -> None:
        """Queue edges (active, monotonic ns) and make the fd readable.

        `skip` sequence numbers are left out first, as when the kernel's buffer overflowed.
        """
        with self._lock:
            self._seq += skip
            for active, ts in edges:
                self._seq += 1
                self._events.append(gpiod.EdgeEvent(RISING if active else FALLING, ts, 17,
                                                    self._seq, self._seq))
                self.level = active
        os.write(self._write, b"e")

    def fileno(self) -> int:
        return self._read

    def read_edge_events(self, max_events: int | None = None) -> list[Any]:
        with contextlib.suppress(BlockingIOError):
            os.read(self._read, 4096)
        with self._lock:
            events, self._events = self._events, []
        return events

    def get_value(self, line: int | str) -> Value:
        self.level_reads += 1
        return Value.ACTIVE if self.level else Value.INACTIVE

    def release(self) -> None:
        self.released = True
        os.close(self._read)
        os.close(self._write)


def bounce(start_ns: int, active: bool) -> list[tuple[bool, int]]:
    """A contact closing (or opening) with 4 bounces 0.2 ms apart."""
    return [(active if i % 2 == 0 else not active, start_ns + i * MS // 5) for i in range(5)]


def test_edges_mode_reports_debounced_transitions_with_kernel_times() -> None:
    request = FakeLineRequest()
    options = GpioOptions(line=17, mode="edges", edge="both", debounce=0.005, field="closed")
    sink = RecordingSink()
    with running(lambda s: read_line_forever(options, lambda: request, s), sink):
        wait_for(lambda: request.level_reads, what="the driver watching the line")
        t0 = time.monotonic_ns()
        request.emit(bounce(t0, True))
        wait_for(lambda: len(sink.fields) == 1, what="the press")
        t1 = time.monotonic_ns()
        request.emit(bounce(t1, False))
        wait_for(lambda: len(sink.fields) == 2, what="the release")
        request.emit([(True, time.monotonic_ns()), (False, time.monotonic_ns() + MS)])  # a glitch
        request.emit(bounce(time.monotonic_ns() + 20 * MS, True))
        wait_for(lambda: len(sink.fields) == 3, what="the second press")
    records = sink.snapshot()[0]
    assert [r.fields for r in records] == [{"closed": True}, {"closed": False}, {"closed": True}]
    # Stamped with the last edge of each burst, converted to wall-clock time.
    last_edge_age = (time.monotonic_ns() - (t0 + 4 * MS // 5)) / 1e9
    assert abs(records[0].ts - (time.time() - last_edge_age)) < 0.05
    assert request.released


def test_counter_mode_counts_debounced_pulses_per_interval() -> None:
    request = FakeLineRequest()
    options = GpioOptions(line="GPIO27", mode="counter", edge="rising", debounce=0.002,
                          interval=0.3, field="tips")
    sink = RecordingSink()
    with running(lambda s: read_line_forever(options, lambda: request, s), sink):
        wait_for(lambda: request.level_reads, what="the driver watching the line")
        now = time.monotonic_ns()
        edges: list[tuple[bool, int]] = []
        for pulse in range(5):  # five bouncing pulses, 10 ms apart
            edges += [*bounce(now + pulse * 10 * MS, True), (False, now + pulse * 10 * MS + 5 * MS)]
        request.emit(edges)
        wait_for(lambda: any(f["tips_total"] == 5 for f in sink.fields), what="five pulses counted")
    fields = sink.fields
    assert sum(f["tips"] for f in fields) == 5
    assert all(f["tips_rate_hz"] == pytest.approx(f["tips"] / 0.3, rel=0.5) for f in fields)


def test_level_mode_polls_the_line() -> None:
    request = FakeLineRequest(level=True)
    options = GpioOptions(line=22, mode="level", interval=0.05, field="full")
    sink = RecordingSink()
    with running(lambda s: read_line_forever(options, lambda: request, s), sink):
        wait_for(lambda: len(sink.fields) >= 2, what="two polls")
        request.level = False
        wait_for(lambda: sink.fields[-1] == {"full": False}, what="the new level")
    assert sink.fields[0] == {"full": True}


def test_a_line_that_cannot_be_requested_is_reported_down() -> None:
    def refuse() -> FakeLineRequest:
        raise OSError(16, "Device or resource busy")

    sink = RecordingSink()
    with running(lambda s: read_line_forever(GpioOptions(line=3), refuse, s), sink):
        wait_for(lambda: sink.states, what="a state")
    assert sink.states[0] == (False, "cannot request /dev/gpiochip0 line 3: [Errno 16] "
                                     "Device or resource busy")


def test_the_real_gpiod_request_of_a_missing_chip_is_reported_down(tmp_path: Any) -> None:
    options = GpioOptions(line=4, chip="/dev/gpiochip999")
    sink = RecordingSink()
    with running(start("door", options), sink):
        wait_for(lambda: sink.states, what="a state")
    up, detail = sink.states[0]
    assert not up and detail.startswith("cannot request /dev/gpiochip999 line 4:"), detail


def test_a_gap_in_the_kernel_sequence_numbers_is_counted() -> None:
    request = FakeLineRequest()
    options = GpioOptions(line=17, mode="edges", debounce=0.0)
    sink = RecordingSink()
    with running(lambda s: read_line_forever(options, lambda: request, s), sink):
        wait_for(lambda: request.level_reads, what="the driver watching the line")
        request.emit([(True, time.monotonic_ns())])
        request.emit([(False, time.monotonic_ns())], skip=3)
        wait_for(lambda: len(sink.fields) == 2, what="both edges")
    assert sink.reject_counts == {"gpio_events_lost": 1}
    assert "3 edge event(s) lost" in sink.snapshot()[2][0][1]


def test_without_gpiod_the_line_is_down_and_the_rest_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod now raises ImportError
    sink = RecordingSink()
    with running(start("door", GpioOptions(line=4)), sink):
        wait_for(lambda: sink.states, what="a state")
    up, detail = sink.states[0]
    assert not up and "cannot request /dev/gpiochip0 line 4" in detail and "gpiod" in detail


def test_hardware_libraries_are_not_imported_with_the_driver_table() -> None:
    code = ("import sys, devices.registry, gateway.config; "
            "print(sorted(m for m in ('gpiod', 'smbus2', 'pymodbus') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=True, cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "[]"
