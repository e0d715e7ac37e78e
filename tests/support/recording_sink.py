"""A `RecordSink` that remembers what a driver delivered, for driver tests."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from devices.base import Record


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
