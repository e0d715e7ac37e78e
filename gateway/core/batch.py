"""Batching as pure logic: which readings go together, when a batch is due, how it splits.

Stdlib only, no clock of its own (the caller passes `now`). A batch holds
readings of one group: one device, one epoch and one delivery class (QoS);
the caller's key says which. A group is due when it holds `max_readings`
or when its oldest reading has waited `max_delay`. A due group is cut into
batches of at most `max_readings`, and a batch whose payload does not fit
is split in halves until every part fits or holds a single reading (which
the caller then refuses as too large).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class BatchPolicy:
    """The `batching:` block of the gateway config (docs/contracts.md)."""

    max_readings: int = 100
    max_delay: float = 2.0
    compression: str = "none"  # or "zlib"


@dataclass
class _Group(Generic[Item]):
    since: float  # when its oldest item came
    items: list[Item] = field(default_factory=list)


class Grouper(Generic[Key, Item]):
    """Items waiting for their batch, per group, in the order they came."""

    def __init__(self, max_readings: int, max_delay: float) -> None:
        if max_readings < 1 or max_delay < 0:
            raise ValueError("max_readings must be at least 1 and max_delay at least 0")
        self.max_readings = max_readings
        self.max_delay = max_delay
        self._groups: dict[Key, _Group[Item]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: Key, item: Item, now: float) -> None:
        """Queue `item` in the group `key`."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(now)
        group.items.append(item)
        self._count += 1

    def next_due(self) -> float | None:
        """When the oldest waiting group falls due for its delay (None: nothing waits)."""
        if not self._groups:
            return None
        return min(group.since for group in self._groups.values()) + self.max_delay

    def take(self, now: float, limit: int, *, flush: bool = False) -> list[tuple[Key, list[Item]]]:
        """Up to `limit` batches that are due now (all of them with `flush`), oldest group
        first; a group's items left after a full batch stay and keep their age."""
        batches: list[tuple[Key, list[Item]]] = []
        for key in sorted(self._groups, key=lambda k: self._groups[k].since):
            group = self._groups[key]
            while len(batches) < limit and group.items and (
                    flush or len(group.items) >= self.max_readings
                    or now - group.since >= self.max_delay):
                part = group.items[:self.max_readings]
                del group.items[:self.max_readings]
                self._count -= len(part)
                batches.append((key, part))
            if not group.items:
                del self._groups[key]
            if len(batches) >= limit:
                break
        return batches


def split_to_fit(items: list[Item], encode: Callable[[list[Item]], bytes | None]
                 ) -> tuple[list[tuple[list[Item], bytes]], list[Item]]:
    """Cut a batch into parts whose payloads fit, halving where one does not.

    `encode` gives a part's payload, or None when it does not fit. Returns the
    parts with their payloads, in order, and the items that do not fit even alone.
    """
    parts: list[tuple[list[Item], bytes]] = []
    alone: list[Item] = []
    pending = [items]
    while pending:
        chunk = pending.pop(0)
        payload = encode(chunk)
        if payload is not None:
            parts.append((chunk, payload))
        elif len(chunk) == 1:
            alone.append(chunk[0])
        else:
            half = len(chunk) // 2
            pending[:0] = [chunk[:half], chunk[half:]]
    return parts, alone
