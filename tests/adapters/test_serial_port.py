"""The serial driver against real pseudo-terminals: lines, garbage, late ports, unplug.

Each test runs the driver on an event loop in a thread with a recording sink
and plays the device on the pty master. Opening a port flushes its input, so
a test writes only after the driver reported the port up.
"""

from __future__ import annotations

import os
import pty
import select
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import serial_asyncio_fast

from devices.serial.port import SerialOptions, start
from tests.support.recording_sink import RecordingSink, running
from tests.support.waiting import wait_for

TIMEOUT = 15.0


class FakeDevice:
    """The device end of a pty: the test writes what the sensor would send."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)

    def send(self, data: bytes) -> None:
        """Write all of `data`, waiting (bounded) while the driver drains the pty."""
        deadline = time.monotonic() + TIMEOUT
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [self.master], [], 0.05)
            if writable:
                with suppress(BlockingIOError):  # select said writable; the pty may disagree
                    view = view[os.write(self.master, view) :]
            assert time.monotonic() < deadline, "the driver stopped reading the pty"

    def close_slave(self) -> None:
        """Close the test's own device-side fd (the driver opens its own)."""
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def unplug(self) -> None:
        """Close both of the test's ends, as a USB adapter pulled out would."""
        self.close_slave()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def no_slave_open(self) -> bool:
        """True once nobody (the driver included) holds the device side open."""
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        return any(events & select.POLLHUP for _, events in poller.poll(0))


@pytest.fixture
def new_device() -> Iterator[Callable[[], FakeDevice]]:
    """Make fake devices; whatever a test left plugged in is unplugged afterwards."""
    made: list[FakeDevice] = []

    def make() -> FakeDevice:
        made.append(FakeDevice())
        return made[-1]

    yield make
    for fake in made:
        fake.unplug()


@pytest.fixture
def device(new_device: Callable[[], FakeDevice]) -> FakeDevice:
    return new_device()


@pytest.fixture
def open_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the driver's attempts to open a port (the real open still runs)."""
    attempts: list[str] = []
    real_open = serial_asyncio_fast.open_serial_connection

    async def counting_open(**kwargs: Any) -> Any:
        attempts.append(kwargs["url"])
        return await real_open(**kwargs)

    monkeypatch.setattr(serial_asyncio_fast, "open_serial_connection", counting_open)
    return attempts


def wait_until_up(sink: RecordingSink, times: int = 1) -> None:
    wait_for(
        lambda: sum(1 for up, _ in sink.states if up) >= times,
        timeout=TIMEOUT,
        what=f"the port to be reported up {times} time(s)",
    )


def test_json_lines_become_records_and_earlier_bytes_are_flushed(device: FakeDevice) -> None:
    device.send(b'{"before": "open"}\n')  # sent while nobody had the port open
    sink = RecordingSink()
    with running(start("climate", SerialOptions(port=device.path)), sink):
        wait_until_up(sink)
        assert sink.states == [(True, f"opened {device.path}")]  # DTR/RTS on a pty: no error
        device.send(b'{"temp_c": 21.5, "alarm": false}\n{"temp_c": 21.6')
        device.send(b', "alarm": true}\r\n')
        wait_for(lambda: len(sink.fields) >= 2, timeout=TIMEOUT, what="two records")
    assert sink.fields == [{"temp_c": 21.5, "alarm": False}, {"temp_c": 21.6, "alarm": True}]
    assert sink.reject_counts == Counter()


@pytest.mark.parametrize(
    ("options", "lines", "expected"),
    [
        (
            {"format": "csv", "columns": ("temp_c", "humidity_pct", "site")},
            b"21.5,40,gh-1\n22,41.5,gh-2\n",
            [
                {"temp_c": 21.5, "humidity_pct": 40, "site": "gh-1"},
                {"temp_c": 22, "humidity_pct": 41.5, "site": "gh-2"},
            ],
        ),
        (
            {"format": "csv", "columns": ("a", "b"), "delimiter": ";"},
            b"1;true\n",
            [{"a": 1, "b": True}],
        ),
        (
            {"format": "kv"},
            b"temp_c=21.5 alarm=false\ncounter=7,site=gh-1\n",
            [{"temp_c": 21.5, "alarm": False}, {"counter": 7, "site": "gh-1"}],
        ),
    ],
)
def test_csv_and_kv_lines_become_records(
    device: FakeDevice, options: dict[str, Any], lines: bytes, expected: list[dict[str, Any]]
) -> None:
    sink = RecordingSink()
    with running(start("dev", SerialOptions(port=device.path, **options)), sink):
        wait_until_up(sink)
        device.send(lines)
        wait_for(lambda: len(sink.fields) >= len(expected), timeout=TIMEOUT, what="records")
    assert sink.fields == expected


def test_garbage_is_counted_by_reason_and_skipped(device: FakeDevice) -> None:
    sink = RecordingSink()
    options = SerialOptions(port=device.path, max_line_bytes=64)
    with running(start("climate", options), sink):
        wait_until_up(sink)
        device.send(
            b'{"n": 1}\n'
            b"\x00\x07 line noise\n"
            b'{"n": "\xff\xfe"}\n'
            b'{"n": "' + b"x" * 20_000 + b'"}\n'
            b"[1, 2, 3]\n"
            b"\n"
            b'{"n": 2'
        )
        device.send(b"}\n")
        wait_for(lambda: len(sink.fields) >= 2, timeout=TIMEOUT, what="the later good line")
    assert sink.fields == [{"n": 1}, {"n": 2}]
    assert sink.reject_counts == Counter(
        {"bad_json": 1, "invalid_utf8": 1, "line_too_long": 1, "not_an_object": 1}
    )
    assert sink.states == [(True, f"opened {device.path}")]


def test_a_port_that_appears_later_is_picked_up(
    tmp_path: Path, device: FakeDevice, open_attempts: list[str]
) -> None:
    port = tmp_path / "ttyGREENHOUSE"
    sink = RecordingSink()
    with running(start("climate", SerialOptions(port=str(port), reopen_max=0.2)), sink):
        wait_for(lambda: len(open_attempts) >= 3, timeout=TIMEOUT, what="three open attempts")
        assert sink.states == [(False, f"cannot open {port}: No such file or directory")]
        port.symlink_to(device.path)
        wait_until_up(sink)
        device.send(b'{"temp_c": 20.0}\n')
        wait_for(lambda: sink.fields, timeout=TIMEOUT, what="a record")
    assert sink.fields == [{"temp_c": 20.0}]
    assert sink.states[1:] == [(True, f"opened {port}")]


def test_unplug_is_reported_once_and_replug_resumes(
    tmp_path: Path, new_device: Callable[[], FakeDevice], open_attempts: list[str]
) -> None:
    port = tmp_path / "ttyCLIMATE"
    first = new_device()
    port.symlink_to(first.path)
    sink = RecordingSink()
    with running(start("climate", SerialOptions(port=str(port), reopen_max=0.2)), sink):
        wait_until_up(sink)
        first.send(b'{"seq": 1}\n{"partial": ')
        wait_for(lambda: sink.fields, timeout=TIMEOUT, what="the first record")

        first.unplug()
        port.unlink()  # the udev symlink goes away with the adapter
        wait_for(lambda: not sink.states[-1][0], timeout=TIMEOUT, what="the port reported down")
        attempts_when_down = len(open_attempts)
        wait_for(
            lambda: len(open_attempts) >= attempts_when_down + 3,
            timeout=TIMEOUT,
            what="three failed reopen attempts",
        )
        assert [up for up, _ in sink.states] == [True, False]  # once per outage, not per retry
        assert sink.states[1][1].startswith(f"lost {port}: ")

        second = new_device()
        temporary = tmp_path / "ttyCLIMATE.new"
        temporary.symlink_to(second.path)
        os.replace(temporary, port)  # the adapter is back, at the same path
        wait_until_up(sink, times=2)
        second.send(b'{"seq": 2}\n')
        wait_for(lambda: len(sink.fields) >= 2, timeout=TIMEOUT, what="a record after replug")
    assert sink.fields == [{"seq": 1}, {"seq": 2}]
    assert [up for up, _ in sink.states[:3]] == [True, False, True]
    assert sink.reject_counts == Counter({"line_truncated": 1})


def test_cancellation_releases_the_port(device: FakeDevice) -> None:
    sink = RecordingSink()
    with running(start("climate", SerialOptions(port=device.path)), sink):
        wait_until_up(sink)
        device.close_slave()  # from now on only the driver holds the device side
        assert not device.no_slave_open()
    wait_for(device.no_slave_open, timeout=TIMEOUT, what="the driver to close the port")
    assert sink.states == [(True, f"opened {device.path}")]


def test_a_path_that_is_not_a_serial_port_is_reported_and_retried(
    tmp_path: Path, open_attempts: list[str]
) -> None:
    not_a_tty = tmp_path / "notes.txt"
    not_a_tty.write_text("hello\n")
    sink = RecordingSink()
    with running(start("climate", SerialOptions(port=str(not_a_tty), reopen_max=0.2)), sink):
        wait_for(lambda: len(open_attempts) >= 3, timeout=TIMEOUT, what="three open attempts")
    [(up, detail)] = sink.states
    assert not up
    assert detail.startswith(f"cannot open {not_a_tty}: ")
    assert "configure" in detail
