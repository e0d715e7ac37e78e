"""The publisher's batcher: stored rows gathered per device, epoch and QoS, sent as v2 batches.

The grouping, the due rule and the splitting are `gateway.core.batch`; this
module adds the clock, the row payloads and the timer that wakes the publisher
when the oldest waiting row reaches `max_delay`. The outbox still holds one row
per reading: a batch is one publish of several rows, and the publisher moves
each of them on that publish's ack (docs/contracts.md, "Wire format v2").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.batch import BatchPolicy, Grouper, split_to_fit
from gateway.core.batch_wire import (
    MAX_INFLATED_BYTES,
    batch_topic,
    compress,
    item_of_v1,
    join_items,
)
from gateway.core.confirmation import prefix_of
from gateway.core.outbox_states import TRANSITIONS, RowEvent, RowLedger, RowState, state_in_store
from gateway.store.outbox import OutboxRow

_GroupKey = tuple[str, str, str, str, int]  # topic prefix, gateway, device, epoch, QoS
_Waiting = tuple[OutboxRow, bytes]  # the row and its reading as a v2 object (JSON text)
MAX_WAITING_BYTES = 16 * 1024 * 1024  # payload bytes of rows waiting, past which none is taken
Fits = Callable[[str, bytes, int], bool]  # topic, payload, QoS -> fits the broker's limits


@dataclass(frozen=True, slots=True)
class Batch:
    """One message to publish: several rows of one device, epoch and QoS."""

    topic: str
    qos: int
    rows: tuple[OutboxRow, ...]
    payload: bytes


class RowBatcher:
    """Rows taken from the store and not yet published, per group."""

    def __init__(self, policy: BatchPolicy, fits: Fits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._fits = fits
        self._clock = clock
        self._groups: Grouper[_GroupKey, _Waiting] = Grouper(policy.max_readings,
                                                             policy.max_delay)
        self._ids: set[int] = set()
        self.waiting_bytes = 0  # the payloads of the rows waiting
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self.batches = 0  # messages published by batching
        self.splits = 0  # batches cut in parts to fit the broker's limits

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._ids

    def add(self, row: OutboxRow) -> str | None:
        """Queue a row for its batch; why it cannot go in one, or None.

        A row already waiting is not queued twice.
        """
        if row.id in self._ids:
            return None
        found = item_of_v1(row.payload)
        prefix = prefix_of(row.topic)
        if found is None or prefix is None:
            return f"unbatchable: not a v1 reading on {{prefix}}/{{device}}/{{stream}} ({row.topic})"
        gateway, epoch, item = found
        self._groups.add((prefix, gateway, row.device, epoch, row.qos), (row, item), self._clock())
        self._ids.add(row.id)
        self.waiting_bytes += len(row.payload)
        return None

    @property
    def full(self) -> bool:
        """True when the rows waiting hold so many bytes that no more are to be taken."""
        return self.waiting_bytes >= MAX_WAITING_BYTES

    def take(self, limit: int, *, flush: bool = False) -> tuple[list[Batch], list[OutboxRow]]:
        """Up to about `limit` messages that are due (`flush`: all that wait), and the rows
        too large to go even alone."""
        batches: list[Batch] = []
        alone: list[OutboxRow] = []
        for key, waiting in self._groups.take(self._clock(), limit, flush=flush):
            prefix, gateway, device, epoch, qos = key
            topic = batch_topic(prefix, device)

            def encode(part: list[_Waiting], topic: str = topic, qos: int = qos,
                       head: tuple[str, str, str] = (gateway, device, epoch)) -> bytes | None:
                text = join_items(head[0], head[2], head[1], [item for _, item in part])
                if len(text) > MAX_INFLATED_BYTES:
                    return None
                payload = compress(text) if self.policy.compression == "zlib" else text
                return payload if self._fits(topic, payload, qos) else None

            parts, too_large = split_to_fit(waiting, encode)
            self.splits += len(parts) - 1 if len(parts) > 1 else 0
            for part, payload in parts:
                batches.append(Batch(topic, qos, tuple(row for row, _ in part), payload))
            alone.extend(row for row, _ in too_large)
            for row, _ in waiting:
                self._ids.discard(row.id)
                self.waiting_bytes -= len(row.payload)
        self.batches += len(batches)
        return batches, alone

    def resend_ids(self, ledger: RowLedger, limit: int) -> list[int]:
        """Rows to send again, oldest first, but not those waiting here."""
        return [i for i in ledger.ids(RowState.RESEND) if i not in self._ids][:limit]

    def figures(self) -> dict[str, int]:
        """What `status` shows: messages that were batches, batches split to fit the
        broker's limits, rows waiting for their batch."""
        return {"batches_sent": self.batches, "batch_splits": self.splits,
                "batch_waiting": len(self)}

    def schedule(self, wake: Callable[[], None]) -> None:
        """Have `wake` called when the oldest waiting row falls due."""
        due = self._groups.next_due()
        if due is None or due >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due

        def fire() -> None:
            self._timer, self._timer_at = None, float("inf")
            wake()

        self._timer = asyncio.get_running_loop().call_later(max(0.0, due - self._clock()), fire)


def publish_batch(batch: Batch, batcher: RowBatcher, ledger: RowLedger,
                  publish: Callable[[str, bytes, int], int | None]) -> int | None:
    """Publish one batch and move each of its rows: its message's mid, or None when it was
    not sent (the connection is lost, or a row settled meanwhile: the rest wait again)."""
    rows = []
    for row in batch.rows:
        state = ledger.state(row.id, state_in_store(row.held))
        if RowEvent.SEND in TRANSITIONS[state]:
            rows.append((row, state))
    if len(rows) < len(batch.rows):  # settled meanwhile: send the rest on their own
        for row, _ in rows:
            batcher.add(row)
        return None
    mid = publish(batch.topic, batch.payload, batch.qos)
    event = RowEvent.CONNECTION_LOST if mid is None else RowEvent.SEND
    for row, state in rows:
        ledger.move(row.id, event, state)
    return mid
