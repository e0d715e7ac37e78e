"""Per-stream bookkeeping of the consumer: first contact, fresh readings, duplicates, gaps.

Pure. The database decides whether an identity is new (its primary key); this
module folds a batch of those outcomes into per-stream deltas and adds them to
the stream's stored counters, which the same transaction writes back.

A consumer may start long after a stream began, so a stream's gaps are counted
from its first contact: `first_seq` is the lowest seq of the first batch in
which the consumer stored anything of that stream, and stays put. The gaps are
the seqs from `first_seq` to the highest seen that have not arrived
(at-most-once losses, or readings still on their way). A reading below
`first_seq` that arrives later is history filling in: stored, counted in
`before_first`, neither a duplicate nor a gap. Seqs the gateway says it
dropped on purpose (an envelope's `dropped` range) and that have not arrived
are `dropped_by_gateway`, not gaps. Nothing here depends on the order in
which readings arrive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

StreamId = tuple[str, str, str, str]  # (gateway, epoch, device, stream)


@dataclass
class StreamDelta:
    """What one batch brings to one stream: its fresh seqs and its duplicates."""

    fresh: list[int] = field(default_factory=list)
    duplicates: int = 0


def fold(outcomes: Iterable[tuple[StreamId, int, bool]]) -> dict[StreamId, StreamDelta]:
    """Fold (stream, seq, fresh) outcomes into per-stream deltas."""
    deltas: dict[StreamId, StreamDelta] = {}
    for stream, seq, fresh in outcomes:
        delta = deltas.get(stream)
        if delta is None:
            delta = deltas[stream] = StreamDelta()
        if fresh:
            delta.fresh.append(seq)
        else:
            delta.duplicates += 1
    return deltas


@dataclass(frozen=True)
class StreamCounters:
    """A stream's counters as stored beside `readings`; `first_seq` 0 means no contact yet."""

    first_seq: int = 0
    max_seq: int = 0
    received: int = 0
    duplicates: int = 0
    before_first: int = 0
    # Seqs the gateway said it dropped on purpose (an envelope's `dropped`) that had not
    # arrived, and the highest seq such a notice covered so far.
    dropped_by_gateway: int = 0
    dropped_upto: int = 0

    @property
    def gaps(self) -> int:
        """Seqs from first contact up to the highest received that have not arrived and that
        the gateway did not say it dropped."""
        if not self.first_seq:
            return 0
        return max(0, self.max_seq - self.first_seq + 1 - (self.received - self.before_first)
                   - self.dropped_by_gateway)

    def dropped_range(self, first: int, last: int) -> tuple[int, int] | None:
        """The part of a notice's range not counted yet (from first contact on), or None."""
        low = max(first, self.dropped_upto + 1, self.first_seq or first)
        return (low, last) if low <= last else None

    def with_dropped(self, last: int, not_arrived: int) -> StreamCounters:
        """The counters after a notice's new part up to `last`, of which `not_arrived` seqs
        had not arrived."""
        return replace(self, dropped_by_gateway=self.dropped_by_gateway + not_arrived,
                       dropped_upto=max(self.dropped_upto, last))

    def plus(self, delta: StreamDelta) -> StreamCounters:
        """The counters after adding one batch."""
        fresh = delta.fresh
        first = self.first_seq or (min(fresh) if fresh else 0)
        below = sum(1 for seq in fresh if seq < first)
        return StreamCounters(
            first_seq=first,
            max_seq=max(self.max_seq, max(fresh, default=0)),
            received=self.received + len(fresh),
            duplicates=self.duplicates + delta.duplicates,
            before_first=self.before_first + below,
            dropped_by_gateway=self.dropped_by_gateway,
            dropped_upto=self.dropped_upto,
        )


def seq_jumps(streams_seqs: Iterable[tuple[StreamId, int]], stored_max: dict[StreamId, int],
              bound: int, last_jump: dict[StreamId, int] | None = None
              ) -> tuple[set[int], dict[StreamId, int | None]]:
    """Positions of the readings whose seq lies more than `bound` beyond their stream's
    highest seq so far (the stored `max_seq` and the seqs of the batch let in below it),
    and each stream's refused jump to remember (None: forget it).

    First contact has no bound: a stream never seen starts at the lowest seq the batch
    brings of it, so a first batch of [1, 2, 2^63-1] keeps 1 and 2. A jump is refused
    once: a stream that goes on from there (another seq within `bound` of the refused
    one, in this batch or a later one: e.g. after more than `bound` at-most-once readings
    were lost) has moved on, and is let in. The seqs of a stream are taken in ascending
    order, so the outcome does not depend on arrival order.
    """
    items = list(streams_seqs)
    high = dict(stored_max)
    pending: dict[StreamId, int | None] = dict(last_jump or {})
    changed: dict[StreamId, int | None] = {}
    jumps: set[int] = set()
    for position, (stream, seq) in sorted(enumerate(items), key=lambda item: item[1]):
        top, jump = high.get(stream), pending.get(stream)
        if top is None or seq <= top + bound:
            high[stream] = seq if top is None else max(top, seq)
        elif jump is not None and seq != jump and abs(seq - jump) <= bound:
            high[stream] = seq  # the stream has moved on
            pending[stream] = changed[stream] = None
        else:
            jumps.add(position)
            pending[stream] = changed[stream] = seq
    return jumps, changed
