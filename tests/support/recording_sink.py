"""Running a driver in tests: a `RecordSink` that remembers what it delivered,
and `running()`, which drives it on its own event loop in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from devices.base import DriverRun, Record


class RecordingSink:
    """Collects what a driver delivers, safe to read from the test thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._states: list[tuple[bool, str]] = []
        self._rejects: list[tuple[str, str]] = []

    def record(self, record: Record) -> None:
        with self._lock:
            self._records.append(record)

    def rejected(self, reason: str, detail: str) -> None:
        with self._lock:
            self._rejects.append((reason, detail))

    def device_state(self, up: bool, detail: str) -> None:
        with self._lock:
            self._states.append((up, detail))

    @property
    def fields(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(record.fields) for record in self._records]

    @property
    def states(self) -> list[tuple[bool, str]]:
        with self._lock:
            return list(self._states)

    @property
    def reject_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(reason for reason, _ in self._rejects)

    def snapshot(self) -> tuple[list[Record], list[tuple[bool, str]], list[tuple[str, str]]]:
        with self._lock:
            return list(self._records), list(self._states), list(self._rejects)


@contextmanager
def running(run: DriverRun, sink: RecordingSink) -> Iterator[None]:
    """Run the driver on an event loop in a thread; cancel it and check it stopped."""
    loop = asyncio.new_event_loop()
    task: asyncio.Future[None] = asyncio.ensure_future(run(sink), loop=loop)
    failures: list[BaseException] = []

    def drive() -> None:
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=15.0)
    assert not thread.is_alive(), "driver did not stop after cancellation"
    assert failures == [], "driver died instead of running until cancelled"
    assert task.cancelled()
