"""Reading identity: epochs and per-stream sequence numbers (docs/contracts.md, "Reading identity").

A seq is handed out once per `(epoch, device, stream)` and never again. The
store persists the counters in the same transaction as the readings; a new
epoch starts whenever the store cannot prove it saw a clean stop, because a
power cut may have rolled back counters that readings already went out with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from gateway.core.envelope import MAX_SEQ

StreamKey = tuple[str, str]  # (device, stream)


def new_epoch(now: float, token: str) -> str:
    """An epoch name that sorts by start time: `20261126T210000Z-<token>`."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{token}"


class SequenceCounters:
    """The last seq handed out per stream within one epoch."""

    def __init__(self, last: Mapping[StreamKey, int] | None = None) -> None:
        self._last: dict[StreamKey, int] = dict(last or {})
        self._dirty: set[StreamKey] = set()

    def next(self, key: StreamKey) -> int:
        """Hand out the next seq of a stream (1 for a stream's first reading).

        Raises:
            OverflowError: past 2^63-1, which a restart (new epoch) clears.
        """
        seq = self._last.get(key, 0) + 1
        if seq > MAX_SEQ:
            raise OverflowError(f"seq of {key[0]}/{key[1]} passed 2^63-1")
        self._last[key] = seq
        self._dirty.add(key)
        return seq

    def last(self, key: StreamKey) -> int:
        """The last seq handed out (0 for none)."""
        return self._last.get(key, 0)

    def take_dirty(self) -> list[tuple[StreamKey, int]]:
        """Counters changed since the last call, for the store to persist."""
        changed = [(key, self._last[key]) for key in sorted(self._dirty)]
        self._dirty.clear()
        return changed

    def items(self) -> Iterable[tuple[StreamKey, int]]:
        """Every counter."""
        return self._last.items()
