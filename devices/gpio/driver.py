"""The `gpio` driver: one input line on the kernel's GPIO character device.

Data layout. The line is requested from `/dev/gpiochipN` through the
libgpiod 2.x bindings (`gpiod`) as an input with edge detection; the kernel
queues `EdgeEvent`s (type rising/falling, `timestamp_ns` on
CLOCK_MONOTONIC, line offset, sequence numbers) on the request's file
descriptor, which becomes readable when events are waiting. The
`active_low` setting makes the kernel invert the line, so "active" and
"rising" always mean the contact closed.

Modes, each a record field layout:

- `edges`: every debounced transition of the configured `edge` kind is a
  record `{<field>: true|false}` (the level after it), stamped with the
  kernel time of the edge (converted to wall-clock time).
- `level`: the line's level every `interval`: `{<field>: true|false}`.
- `counter`: debounced pulses of the `edge` kind, every `interval`:
  `{<field>: pulses in the interval, <field>_total: since start,
  <field>_rate_hz: pulses per second}`.

The kernel numbers each line's events (`line_seqno`); a jump means its
event buffer overflowed and edges were lost: counted as `gpio_events_lost`
(the level is then re-learnt from the next edge's direction).

Debounce and counting are the pure `devices.gpio.logic`; this module is
the config and a thin adapter over a `gpiod` line request (a fake one with
a real pollable fd in tests). `gpiod` is imported only when a gpio device
starts, so a gateway without GPIO devices runs where the bindings are not
installed; a gpio device there reports itself down, naming the `gpio` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from devices.base import DeviceState, DriverRun, Record, RecordSink
from devices.gpio.logic import EDGES, Debouncer, PulseCounter, wall_time, wanted
from gateway.config.reader import MapReader
from gateway.core.backoff import Backoff
from gateway.core.extras import GPIO

MODES = ("edges", "level", "counter")
EVENTS_LOST = "gpio_events_lost"
BIASES = ("as-is", "pull-up", "pull-down", "disabled")
_CHIP = re.compile(r"/dev/gpiochip[0-9]+")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,50}")
_LINE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class LineRequest(Protocol):
    """The part of `gpiod.LineRequest` the driver uses."""

    def fileno(self) -> int:
        """The fd that is readable while edge events wait."""

    def read_edge_events(self, max_events: int | None = None) -> list[Any]:
        """The waiting `gpiod.EdgeEvent`s (blocks if there are none)."""

    def get_value(self, line: int | str) -> Any:
        """The line's `gpiod.line.Value`."""

    def release(self) -> None:
        """Give the line back."""


@dataclass(frozen=True)
class GpioOptions:
    """One input line and what to make of it."""

    line: int | str
    chip: str = "/dev/gpiochip0"
    mode: str = "edges"
    edge: str = "both"
    bias: str = "as-is"
    active_low: bool = False
    debounce: float = 0.01
    interval: float = 1.0
    field: str = "state"


def read_options(reader: MapReader) -> GpioOptions | None:
    """Read the gpio driver's keys (see the README's driver table).

    Args:
        reader: The device's mapping; problems are recorded on it.

    Returns:
        The options, or None when any of these keys had a problem.
    """
    before = len(reader.problems)
    chip = reader.string("chip", default="/dev/gpiochip0", pattern=_CHIP,
                         expected="a GPIO chip device such as /dev/gpiochip0")
    line: int | str | None = None
    found = reader.raw("line")
    if found is None or found.value is None:
        reader.problem("line", "a line offset (0-1023) or name such as GPIO17",
                       "nothing (the key is missing)")
    elif _line_ok(found.value):
        line = found.value
    else:
        reader.problem("line", "a line offset (0-1023) or name such as GPIO17",
                       repr(found.value)[:60])
    mode = reader.choice("mode", MODES, default="edges")
    edge = reader.choice("edge", EDGES, default="rising" if mode == "counter" else "both")
    bias = reader.choice("bias", BIASES, default="as-is")
    active_low = reader.boolean("active_low", default=False)
    debounce = reader.duration("debounce", default=0.01, maximum=10.0)
    interval = reader.duration("interval", default=60.0 if mode == "counter" else 1.0,
                               minimum=0.01, maximum=86400.0)
    default_field = "pulses" if mode == "counter" else "state"
    field = reader.string("field", default=default_field, pattern=_FIELD,
                          expected="a field name such as rain_tips")
    if mode == "level":
        for key in ("edge", "debounce"):
            if reader.has(key):
                reader.problem(key, f"no '{key}' with mode level (the level is polled)",
                               f"'{key}' given", hint="remove it, or use mode edges/counter")
    elif mode == "edges" and reader.has("interval"):
        reader.problem("interval", "no 'interval' with mode edges (every edge is reported)",
                       "'interval' given", hint="remove it, or use mode level/counter")
    if len(reader.problems) > before or line is None or mode is None or edge is None \
            or bias is None or chip is None or field is None:
        return None
    return GpioOptions(line, chip, mode, edge, bias, active_low, debounce, interval, field)


def _line_ok(value: object) -> bool:
    """A line offset 0..1023 or a line name."""
    if isinstance(value, int) and not isinstance(value, bool):
        return 0 <= value <= 1023
    return isinstance(value, str) and _LINE_NAME.fullmatch(value) is not None


def offered_fields(options: GpioOptions) -> frozenset[str]:
    """`field`, plus `<field>_total` and `<field>_rate_hz` in counter mode."""
    if options.mode == "counter":
        return frozenset({options.field, f"{options.field}_total", f"{options.field}_rate_hz"})
    return frozenset({options.field})


def request_line(options: GpioOptions) -> LineRequest:
    """Request the line from the kernel through gpiod (the only gpiod call).

    Raises:
        OSError: The chip or line cannot be opened (missing, busy, no permission).
        MissingExtra: The gpiod bindings are not installed (the message names the extra).
    """
    try:
        import gpiod  # noqa: PLC0415 - optional at import time, see the module docstring
        from gpiod.line import Bias, Direction, Edge  # noqa: PLC0415
    except ImportError as exc:
        raise GPIO.error("driver gpio", exc) from exc

    biases = {"as-is": Bias.AS_IS, "pull-up": Bias.PULL_UP, "pull-down": Bias.PULL_DOWN,
              "disabled": Bias.DISABLED}
    # Edges and counter modes watch both directions whatever `edge` says: the debouncer
    # needs both to see bounces; `edge` picks the transitions reported or counted.
    detect = Edge.NONE if options.mode == "level" else Edge.BOTH
    settings = gpiod.LineSettings(direction=Direction.INPUT, edge_detection=detect,
                                  bias=biases[options.bias], active_low=options.active_low)
    request: LineRequest = gpiod.request_lines(options.chip, consumer="mqtt-gateway",
                                               config={options.line: settings})
    return request


def start(device_id: str, options: GpioOptions) -> DriverRun:
    """Prepare the reader of one GPIO line.

    Args:
        device_id: The device's id (the sink knows it; kept for the table's signature).
        options: The device's validated options.

    Returns:
        A coroutine function that reads until cancelled.
    """

    async def run(sink: RecordSink) -> None:
        await read_line_forever(options, lambda: request_line(options), sink)

    return run


async def read_line_forever(options: GpioOptions, open_line: Callable[[], LineRequest],
                            sink: RecordSink) -> None:
    """Request the line, read it in its mode, and retry after failures; until cancelled."""
    where = f"{options.chip} line {options.line}"
    backoff = Backoff(base=1.0, cap=60.0)
    state = DeviceState(sink)
    while True:
        try:
            request = open_line()
        except (OSError, ValueError, ImportError) as exc:
            state.report(False, f"cannot request {where}: {exc}")
            await asyncio.sleep(backoff.next_delay())
            continue
        state.report(True, f"requested {where} ({options.mode})")
        try:
            if options.mode == "level":
                await _poll_level(request, options, sink)
            else:
                await _watch_edges(request, options, sink)
        except OSError as exc:
            state.report(False, f"lost {where}: {exc}")
        finally:
            request.release()
        await asyncio.sleep(backoff.next_delay())


async def _poll_level(request: LineRequest, options: GpioOptions, sink: RecordSink) -> None:
    while True:
        sink.record(Record(ts=time.time(), fields={options.field: _active(request, options)}))
        await asyncio.sleep(options.interval)


async def _watch_edges(request: LineRequest, options: GpioOptions, sink: RecordSink) -> None:
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    fd = request.fileno()
    loop.add_reader(fd, readable.set)
    debouncer = Debouncer(round(options.debounce * 1e9), _active(request, options))
    counter = PulseCounter()
    interval_start = loop.time()
    last_seqno: int | None = None
    try:
        while True:
            deadline = debouncer.deadline_ns()
            waits = [] if deadline is None else [(deadline - time.monotonic_ns()) / 1e9]
            if options.mode == "counter":
                waits.append(interval_start + options.interval - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readable.wait(), max(0.0, min(waits)) if waits else None)
            transitions = []
            if readable.is_set():
                readable.clear()
                for event in request.read_edge_events():
                    if last_seqno is not None and event.line_seqno > last_seqno + 1:
                        lost = event.line_seqno - last_seqno - 1
                        sink.rejected(EVENTS_LOST, f"{lost} edge event(s) lost before line "
                                                   f"seqno {event.line_seqno} (kernel buffer full)")
                    last_seqno = event.line_seqno
                    rising = event.event_type == event.Type.RISING_EDGE
                    transitions += debouncer.feed(rising, event.timestamp_ns)
            transitions += debouncer.flush(time.monotonic_ns())
            chosen = [t for t in transitions if wanted(t, options.edge)]
            if options.mode == "edges":
                now_ns, now = time.monotonic_ns(), time.time()
                for transition in chosen:
                    sink.record(Record(ts=wall_time(transition.ts_ns, now_ns, now),
                                       fields={options.field: transition.active}))
                continue
            counter.add(len(chosen))
            elapsed = loop.time() - interval_start
            if elapsed >= options.interval:
                interval_start = loop.time()
                count, total, rate = counter.close_interval(elapsed)
                sink.record(Record(ts=time.time(), fields={
                    options.field: count, f"{options.field}_total": total,
                    f"{options.field}_rate_hz": rate}))
    finally:
        loop.remove_reader(fd)


def _active(request: LineRequest, options: GpioOptions) -> bool:
    """The line's level now (True: active)."""
    value = request.get_value(options.line)
    return bool(getattr(value, "value", value))
