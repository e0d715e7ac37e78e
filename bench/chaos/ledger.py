"""What the path's databases record: the gateway's store (outbox, drops) and the
consumer's (`readings`, stream counters), read through the rig.

`DISK_REASONS` lists the drop reasons that explain a durable reading lost
for a full disk. Every question here is a read; nothing is written.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from tests.support.rig import DURABLE, Rig

# Drop reasons under which the gateway counts a durable reading it could not
# store because the disk is full: `disk_full`, or `store_error` (a failed
# commit, which is how a full disk shows up in releases without `disk_full`).
# Nothing else explains a durable loss in a disk-full fault (not `store_full`:
# that is the store's configured size cap, far above the tmpfs here).
DISK_REASONS = ("disk_full", "store_error")


def _int(rows: list[tuple[object, ...]]) -> int:
    """The first column of the first row as an int; 0 for no row or NULL."""
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0  # type: ignore[call-overload]


class Ledger:
    """Questions about the readings, answered from the store and the consumer's database."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig

    def outbox_pending(self) -> int | None:
        """Rows in the gateway's outbox; None when the store cannot be read."""
        rows = self.rig.store_query("SELECT count(*) FROM outbox")
        return _int(rows) if rows else None

    def delivered_line(self, stream: str, n: int) -> bool:
        """The reading of line n of `stream` is in `readings`."""
        return bool(self.rig.consumer_query(
            "SELECT 1 FROM readings WHERE stream = ? AND value = ? LIMIT 1", (stream, str(n))))

    def stored_through(self, stream: str, n: int) -> bool:
        """The gateway committed the durable reading of line n (so every earlier line is
        committed or dropped: readings are committed in the order they were read)."""
        rows = self.rig.store_query(
            "SELECT payload FROM outbox WHERE stream = ? ORDER BY id DESC LIMIT 1", (stream,))
        payload = rows[0][0] if rows else None
        if isinstance(payload, bytes | str):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if int(json.loads(payload)["value"]) >= n:
                    return True
        return self.delivered_line(stream, n)

    def stored_up_to(self, n: int) -> Callable[[], bool]:
        """A condition: line n is stored for every durable stream."""
        return lambda: all(self.stored_through(s, n) for s in DURABLE)

    def drops(self, stream: str) -> dict[str, int]:
        """Readings of `stream` the gateway counted as dropped, by reason."""
        rows = self.rig.store_query(
            "SELECT reason, coalesce(sum(count), 0) FROM drops WHERE stream = ? GROUP BY reason",
            (stream,))
        return {str(reason): int(str(n)) for reason, n in rows}

    def consumer_counters(self, stream: str) -> tuple[int, int]:
        """The consumer's duplicates dropped and gaps seen for `stream`."""
        rows = self.rig.consumer_query(
            "SELECT coalesce(sum(duplicates), 0), coalesce(sum(gaps), 0) FROM stream_counters "
            "WHERE stream = ?", (stream,))
        return (int(str(rows[0][0])), int(str(rows[0][1]))) if rows else (0, 0)

    def accounted(self, stream: str) -> bool:
        """Every line sent is in `readings`, a consumer gap, or counted as not stored."""
        delivered = _int(self.rig.consumer_query(
            "SELECT count(DISTINCT value) FROM readings WHERE stream = ?", (stream,)))
        _, gaps = self.consumer_counters(stream)
        disk = sum(n for r, n in self.drops(stream).items() if r in DISK_REASONS)
        return delivered + gaps + disk >= self.rig.next_n - 1

    def describe_backlog(self, last: int) -> str:
        """What is still waiting, for an incident report."""
        rig = self.rig
        parts = []
        for stream, epoch, n, held, resends, lo, hi in rig.store_query(
                "SELECT stream, epoch, count(*), sum(acked_at IS NOT NULL), max(resends), min(seq), "
                "max(seq) FROM outbox GROUP BY stream, epoch ORDER BY stream, epoch"):
            text = (f"{stream} epoch {epoch}: {n} rows, seq {lo}..{hi}, {held} acknowledged by the "
                    f"broker and waiting for a confirmation, resent up to {resends}x")
            below = {int(str(q)) for (q,) in rig.consumer_query(
                "SELECT seq FROM readings WHERE stream = ? AND epoch = ? AND seq < ?",
                (stream, epoch, lo))}
            missing = sorted(set(range(1, int(str(lo)))) - below)
            if missing:
                text += (f"; seqs {missing[0]}..{missing[-1]} ({len(missing)}) below them never "
                         "reached readings: a gap the consumer's contiguous confirmation mark "
                         "cannot pass")
            parts.append(text)
        waiting = [s for s in DURABLE if not self.delivered_line(s, last)]
        return (f"gateway outbox: {'; '.join(parts) or 'empty'}; line {last} "
                + (f"missing from readings for {', '.join(waiting)}" if waiting
                   else "is in readings for every durable stream"))
