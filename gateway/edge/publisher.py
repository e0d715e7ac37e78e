"""Feeds the broker from the outbox and the at-most-once queue, and settles acks.

The publisher owns the in-flight window. It sends at-most-once readings
first (they are cheap and only worth anything while fresh), then rows to
resend, then new rows from the store, never more than the window allows.
Rows stored while connected (the live lane) go before the backlog found at
connect time, so a long drain after an outage does not hold fresh readings
behind it; each lane is sent in id order (seq order per stream). The window
is refilled a quarter at a time, so a busy link costs one store query per
batch of acknowledgements rather than one per acknowledgement. Each
PUBACK/PUBCOMP is classified: delivered rows are deleted at the next group
commit, rejected ones quarantined, transient failures retried.

Each row it has in hand moves through the table of
`gateway.core.outbox_states` in a `RowLedger` (`rows`): that is where rows
to resend, rows waiting for a retry and rows the next commit writes are.

With `batching:` the rows go through a `RowBatcher` (`gateway.edge.batching`):
a row waits there, in the state it was in, until its batch is due; the batch
is one message (the window counts messages), and its ack moves every row of it.
"""

from __future__ import annotations

import asyncio
import logging

from paho.mqtt.reasoncodes import ReasonCode

from gateway.core.backoff import Backoff
from gateway.core.batch import BatchPolicy
from gateway.core.inflight import NO_MATCHING_SUBSCRIBERS, AckOutcome, InflightWindow, classify_ack
from gateway.core.outbox_states import TRANSITIONS, RowEvent, RowLedger, RowState, state_in_store
from gateway.core.packet_size import publish_packet_size
from gateway.edge.batching import Batch, RowBatcher
from gateway.edge.ingest import Intake
from gateway.mqtt.link import MqttLink, Session
from gateway.store.outbox import Outbox, OutboxRow

log = logging.getLogger("gateway.publisher")


class Publisher:
    """Moves readings from the store and the volatile queue onto the link."""

    def __init__(self, link: MqttLink, outbox: Outbox, intake: Intake, *, max_inflight: int,
                 max_payload_bytes: int, hold_for_confirmation: bool = False,
                 batching: BatchPolicy | None = None) -> None:
        self.link = link
        # Under end-to-end confirmation, flagged rows wait for the consumer; in
        # broker mode (also for rows flagged under an earlier config) a broker
        # acknowledgement is enough.
        self._hold = hold_for_confirmation
        self.outbox = outbox
        self.intake = intake
        # Per packet id, the row it carries, or the rows of a batch.
        self.window: InflightWindow[OutboxRow | tuple[OutboxRow, ...]] = \
            InflightWindow(max_inflight)
        self.rows = RowLedger()  # the state of every row in hand (the window: their packet ids)
        self._max_inflight = max_inflight
        self._max_payload = max_payload_bytes
        self._max_packet: int | None = None
        self._cursor = 0  # the last row sent, in id order (the live lane)
        # The backlog found at a connect: (the last of its rows sent, its last row).
        self._backlog: tuple[int, int] | None = None
        self._quarantine_logged: set[tuple[str, str, str]] = set()
        self._later_timer: asyncio.TimerHandle | None = None
        self._later_backoff = Backoff(base=0.5, cap=30.0)
        self._retry_logged: set[tuple[str, str, int]] = set()
        self.retries = 0
        self.sent_volatile = 0
        self.acknowledged = 0
        self.settled = 0  # stored rows' acks of any outcome (the watchdog's proof of progress)
        self.first_ack_logged = False
        self.feeding = True
        self._wake = asyncio.Event()
        self.batcher = None if batching is None else RowBatcher(
            batching, lambda topic, payload, qos: self._too_large(topic, payload, qos) is None)
        link.on_publish = self._on_publish

    def wake(self) -> None:
        """Something to send may have arrived."""
        self._wake.set()

    def connected(self, session: Session) -> None:
        """Adopt the broker's limits from CONNACK and start sending."""
        self.window.resize(min(self._max_inflight, session.receive_maximum))
        self._max_packet = session.maximum_packet_size
        last = self.outbox.last_id()
        if self._backlog is None and last > self._cursor:
            # What is stored now is the backlog; what is stored from here on goes first.
            # (Reconnecting during a drain keeps both lanes: the live lane holds what came
            # meanwhile and still goes first.)
            self._backlog, self._cursor = (self._cursor, last), last
        self.wake()

    def _too_large(self, topic: str, payload: bytes, qos: int) -> str | None:
        """Why a message must not be sent, or None when it fits."""
        if len(payload) > self._max_payload:
            return f"too_large: payload {len(payload)} bytes, max_payload_bytes {self._max_payload}"
        if self._max_packet is not None:
            size = publish_packet_size(topic, len(payload), qos)
            if size > self._max_packet:
                return f"too_large: packet {size} bytes, broker maximum {self._max_packet}"
        return None

    async def run(self) -> None:
        """Send whatever there is room for, each time something changes."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.link.connected:
                self._send_volatile()
                if self.feeding:
                    self._fill_window()
                if self.batcher is not None:
                    self._send_batches()

    def _send_volatile(self) -> None:
        queue = self.intake.volatile
        while queue and self.link.connected:
            item = queue[0]
            if self._too_large(item.topic, item.payload, 0) is not None:
                queue.popleft()
                self.intake.drop("too_large", item.device, item.stream)
                continue
            if self.link.publish(item.topic, item.payload, 0) is None:
                return
            queue.popleft()
            self.sent_volatile += 1

    def _room(self) -> int:
        """How many rows to take now: one per free message of the window, or with
        batching enough to fill it with full batches."""
        room = self.window.room
        if self.batcher is None:
            return room
        if self.batcher.full:  # large readings: memory, not the window, is the bound
            return 0
        return max(0, room * self.batcher.policy.max_readings - len(self.batcher))

    def _fill_window(self) -> None:
        room = self._room()
        if room and self.rows.count(RowState.RESEND):
            batch = self._to_resend(room)
            rows = self.outbox.fetch_ids(batch)
            if len(rows) < len(batch):  # deleted meanwhile: a confirmation took them
                found = {row.id for row in rows}
                for row_id in batch:
                    if row_id not in found:
                        self.rows.move(row_id, RowEvent.CONFIRMED)
            self._send_rows(rows)
            room = self._room()
        if self.window.room < max(1, self.window.capacity // 4) and len(self.window):
            return  # wait for more acknowledgements: refill in batches
        rows = self.outbox.fetch(self._cursor, room) if room else []
        if rows:
            self._cursor = rows[-1].id
            self._send_rows(rows)
            room = self._room()
        if room and self._backlog is not None:
            sent, last = self._backlog
            rows = self.outbox.fetch(sent, room, up_to=last)
            self._backlog = (rows[-1].id, last) if rows else None  # None: the backlog is sent
            self._send_rows(rows)

    def _to_resend(self, limit: int) -> list[int]:
        """Rows to send again, oldest first, but not those waiting in the batcher."""
        if self.batcher is None:
            return self.rows.ids(RowState.RESEND, limit)
        waiting = self.batcher
        return [i for i in self.rows.ids(RowState.RESEND) if i not in waiting][:limit]

    def _send_rows(self, rows: list[OutboxRow]) -> None:
        ledger = self.rows
        batcher = self.batcher
        for row in rows:
            state = ledger.state(row.id, state_in_store(row.held))
            if RowEvent.SEND not in TRANSITIONS[state]:
                continue  # already on its way or settled (a resend and a lane can meet after a restart)
            too_large = self._too_large(row.topic, row.payload, row.qos)
            if too_large is None and batcher is not None:
                too_large = batcher.add(row)  # it waits for its batch in the state it is in
                if too_large is None:
                    continue
            if too_large is not None:
                self._quarantine(row, RowEvent.TOO_LARGE, too_large, state)
                continue
            mid = self.link.publish(row.topic, row.payload, row.qos)
            if mid is None:
                # Lost the connection while sending: this row and the rest go again.
                ledger.move(row.id, RowEvent.CONNECTION_LOST, state)
                continue
            self.window.add(mid, row)
            ledger.move(row.id, RowEvent.SEND, state)

    def _send_batches(self, *, flush: bool = False) -> None:
        """Publish the batches that are due while the window has room."""
        assert self.batcher is not None
        ledger = self.rows
        while self.link.connected and (room := self.window.room):
            batches, too_large = self.batcher.take(room, flush=flush)
            for row in too_large:
                self._quarantine(row, RowEvent.TOO_LARGE, "too_large: over the broker's limits "
                                 "even alone in a batch", ledger.state(row.id,
                                                                        state_in_store(row.held)))
            for batch in batches:
                self._publish_batch(batch)
            if not batches:
                break
        self.batcher.schedule(self.wake)

    def flush(self) -> None:
        """Publish every waiting batch now, due or not (at a stop)."""
        if self.batcher is not None and self.link.connected:
            self._send_batches(flush=True)

    def _publish_batch(self, batch: Batch) -> None:
        ledger, batcher = self.rows, self.batcher
        assert batcher is not None
        rows = []
        for row in batch.rows:
            state = ledger.state(row.id, state_in_store(row.held))
            if RowEvent.SEND in TRANSITIONS[state]:
                rows.append((row, state))
        if len(rows) < len(batch.rows):  # settled meanwhile: send the rest on their own
            for row, _ in rows:
                batcher.add(row)
            return
        mid = self.link.publish(batch.topic, batch.payload, batch.qos)
        event = RowEvent.CONNECTION_LOST if mid is None else RowEvent.SEND
        for row, state in rows:
            ledger.move(row.id, event, state)
        if mid is not None:
            self.window.add(mid, batch.rows)

    def _on_publish(self, mid: int, rc: ReasonCode) -> None:
        carried = self.window.settle(mid)
        if carried is None:
            return  # an at-most-once message written to the socket
        self.settled += 1
        outcome = classify_ack(rc.value)
        if isinstance(carried, tuple):
            for row in carried:
                self._settle_row(row, outcome, rc)
        else:
            self._settle_row(carried, outcome, rc)
        self.wake()

    def _settle_row(self, row: OutboxRow, outcome: AckOutcome, rc: ReasonCode) -> None:
        if outcome is AckOutcome.DELIVERED:
            self._later_backoff.reset()
            # A row under end-to-end confirmation stays until the consumer confirms it.
            self.rows.move(row.id, RowEvent.ACK_HELD if row.confirm and self._hold
                           else RowEvent.ACK_DELIVERED)
            self.acknowledged += 1
            if not self.first_ack_logged:
                self.first_ack_logged = True
                log.info("broker acknowledged the first stored reading: device=%s stream=%s "
                         "seq=%d", row.device, row.stream, row.seq)
        elif outcome is AckOutcome.RETRY:
            self.rows.move(row.id, RowEvent.ACK_RETRY)
            self._retry_later(row, rc)
        else:
            self._quarantine(row, RowEvent.ACK_REJECTED, f"broker rejected: {rc}")

    def _retry_later(self, row: OutboxRow, rc: ReasonCode) -> None:
        """Send a row the broker did not take for good (RETRY_WAIT) again after a delay."""
        self.retries += 1
        first = (row.device, row.stream, rc.value) not in self._retry_logged
        self._retry_logged.add((row.device, row.stream, rc.value))
        hint = " (is the consumer running and subscribed?)" if rc.value == NO_MATCHING_SUBSCRIBERS \
            else ""
        log.log(logging.WARNING if first else logging.DEBUG,
                "device=%s stream=%s seq=%d: broker answered %s (0x%02x) on %s; the reading is "
                "kept and sent again%s", row.device, row.stream, row.seq, rc, rc.value, row.topic,
                hint)
        if self._later_timer is None:
            delay = self._later_backoff.next_delay()
            self._later_timer = asyncio.get_running_loop().call_later(delay, self._release_later)

    def _release_later(self) -> None:
        self._later_timer = None
        self.rows.move_all(RowState.RETRY_WAIT, RowEvent.RETRY_DUE)
        self.wake()

    def _quarantine(self, row: OutboxRow, event: RowEvent, reason: str,
                    at_rest: RowState = RowState.STORED) -> None:
        self.rows.move(row.id, event, at_rest, reason)
        kind = reason.split(":", maxsplit=1)[0]
        first = (row.device, row.stream, kind) not in self._quarantine_logged
        self._quarantine_logged.add((row.device, row.stream, kind))
        log.log(logging.WARNING if first else logging.DEBUG,
                "device=%s stream=%s seq=%d quarantined (topic %s): %s%s", row.device, row.stream,
                row.seq, row.topic, reason,
                "; further ones of this stream are counted in `status`" if first else "")

    def take_settled(self) -> tuple[list[int], list[tuple[int, str]], list[int]]:
        """What the next group commit writes: rows acknowledged, rows quarantined (with the
        reason), and acknowledged rows that wait for a confirmation. They stay settled until
        `committed` says a commit wrote them, so a failed commit loses none."""
        return self.rows.settled()

    def committed(self, acked: list[int], quarantined: list[tuple[int, str]],
                  held: list[int]) -> None:
        """A group commit wrote what `take_settled` gave."""
        self.rows.committed(acked, quarantined, held)

    def resend(self, row_ids: list[int]) -> None:
        """Send rows the store holds as HELD again (their confirmation is overdue)."""
        for row_id in row_ids:
            self.rows.move(row_id, RowEvent.CONFIRMATION_OVERDUE, RowState.HELD)
        self.wake()

    @property
    def acked(self) -> list[int]:
        """Rows acknowledged, to be deleted at the next group commit."""
        return self.rows.ids(RowState.ACKED)

    def batch_figures(self) -> dict[str, int]:
        """What `status` shows of batching: messages that were batches, batches split to fit
        the broker's limits, rows waiting for their batch (nothing when batching is off)."""
        if self.batcher is None:
            return {}
        return {"batches_sent": self.batcher.batches, "batch_splits": self.batcher.splits,
                "batch_waiting": len(self.batcher)}

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet acknowledged."""
        return len(self.window)
