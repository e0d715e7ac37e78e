"""Per-stream bookkeeping of the consumer: fresh readings, duplicates, gaps.

Pure. The database decides whether an identity is new (its primary key); this
module folds a batch of those outcomes into per-stream deltas that the same
transaction adds to the stream's counters. Seqs start at 1 in every epoch, so
the gaps of a stream are `max_seq - received`: seqs below the highest seen
that never arrived (at-most-once losses, or readings still on their way).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

StreamId = tuple[str, str, str, str]  # (gateway, epoch, device, stream)


@dataclass
class StreamDelta:
    """What one batch changes in one stream's counters."""

    max_seq: int = 0
    received: int = 0
    duplicates: int = 0


def fold(outcomes: Iterable[tuple[StreamId, int, bool]]) -> dict[StreamId, StreamDelta]:
    """Fold (stream, seq, fresh) outcomes into per-stream deltas."""
    deltas: dict[StreamId, StreamDelta] = {}
    for stream, seq, fresh in outcomes:
        delta = deltas.get(stream)
        if delta is None:
            delta = deltas[stream] = StreamDelta()
        if fresh:
            delta.received += 1
            delta.max_seq = max(delta.max_seq, seq)
        else:
            delta.duplicates += 1
    return deltas


@dataclass(frozen=True)
class StreamCounters:
    """A stream's counters as stored beside `readings`."""

    max_seq: int
    received: int
    duplicates: int

    @property
    def gaps(self) -> int:
        """Seqs below the highest received that have not arrived."""
        return max(0, self.max_seq - self.received)

    def plus(self, delta: StreamDelta) -> StreamCounters:
        """The counters after adding one batch."""
        return StreamCounters(max(self.max_seq, delta.max_seq), self.received + delta.received,
                              self.duplicates + delta.duplicates)
