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

A row of a stream with `max_age` is sent with an MQTT 5 Message Expiry
Interval of what remains of it; one already older is not sent but handed to
the next commit to drop (`expired`). An envelope goes with the range of seqs
of its stream dropped on purpose before it (`dropped`, gateway.store.dropping).

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
import math
import time
from dataclasses import replace

from paho.mqtt.reasoncodes import ReasonCode

from gateway.config.gateway_config import GatewayConfig
from gateway.core.backoff import Backoff
from gateway.core.batch import BatchPolicy
from gateway.core.clock import ClockSource, TrustedClock, restamp
from gateway.core.envelope import Undecodable, decode, encode
from gateway.core.inflight import NO_MATCHING_SUBSCRIBERS, AckOutcome, InflightWindow, classify_ack
from gateway.core.outbox_states import TRANSITIONS, RowEvent, RowLedger, RowState, state_in_store
from gateway.core.packet_size import publish_packet_size
from gateway.edge.batching import RowBatcher, publish_batch
from gateway.edge.ingest import Intake
from gateway.mqtt.link import MqttLink, Session
from gateway.store.dropping import Dropping, NoticeKey
from gateway.store.outbox import Outbox, OutboxRow

log = logging.getLogger("gateway.publisher")


def max_ages(config: GatewayConfig) -> dict[tuple[str, str], float]:
    """(device, stream) -> `max_age` seconds, for the streams that have one."""
    return {(d.id, s.name): s.max_age for d in config.devices for s in d.streams
            if s.max_age is not None}


class Publisher:
    """Moves readings from the store and the volatile queue onto the link."""

    def __init__(self, link: MqttLink, outbox: Outbox, intake: Intake, *, max_inflight: int,
                 max_payload_bytes: int, hold_for_confirmation: bool = False,
                 clock: ClockSource | None = None, batching: BatchPolicy | None = None) -> None:
        self.link = link
        # Rows taken before the clock's sync are re-based or marked when sent (gateway.core.clock).
        self.clock: ClockSource = clock or TrustedClock()
        self.max_ages: dict[tuple[str, str], float] = {}  # (device, stream) -> seconds
        self.dropping = Dropping()  # for the next commit: expired rows, notices delivered
        self._carrying: dict[int, tuple[NoticeKey, int]] = {}  # row id -> the notice it carries
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
        self._backlog_began = 0.0  # when the backlog was found (monotonic), and how many of
        self._backlog_sent = 0     # its rows were sent since
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
            self._backlog_began, self._backlog_sent = time.monotonic(), 0
        self.wake()

    def _too_large(self, topic: str, payload: bytes, qos: int, expiry: bool = False) -> str | None:
        """Why a message must not be sent, or None when it fits."""
        if len(payload) > self._max_payload:
            return f"too_large: payload {len(payload)} bytes, max_payload_bytes {self._max_payload}"
        if self._max_packet is not None:
            # The Message Expiry Interval property: its id and four bytes.
            size = publish_packet_size(topic, len(payload), qos) + (5 if expiry else 0)
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
            batch = (self.rows.ids(RowState.RESEND, room) if self.batcher is None
                     else self.batcher.resend_ids(self.rows, room))
            rows = self.outbox.fetch_ids(batch)
            if len(rows) < len(batch):  # deleted meanwhile: a confirmation took them
                found = {row.id for row in rows}
                for row_id in batch:
                    if row_id not in found:
                        self.rows.move(row_id, RowEvent.CONFIRMED)
            self._send_rows(rows, lane=False)
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
            self._backlog_sent += len(rows)
            if not rows and self._backlog_sent:
                log.info("backlog of %d readings sent in %.1fs (since the connect that found it)",
                         self._backlog_sent, time.monotonic() - self._backlog_began)

    def _send_rows(self, rows: list[OutboxRow], *, lane: bool = True) -> None:
        ledger = self.rows
        batcher = self.batcher
        for row in rows:
            state = ledger.state(row.id, state_in_store(row.held))
            if RowEvent.SEND not in TRANSITIONS[state] or (lane and state is RowState.HELD):
                # On its way or settled (a resend and a lane can meet after a restart), or
                # delivered and waiting for its confirmation: a lane never sends it twice,
                # its resend comes when the confirmation is overdue.
                continue
            expiry = self._expiry(row)
            if expiry is not None and expiry <= 0 and state in (RowState.STORED, RowState.HELD):
                self.dropping.expired.append(row.id)  # too old to send: the next commit drops it
                continue
            payload = self._payload(row)
            too_large = self._too_large(row.topic, payload, row.qos, expiry is not None)
            if too_large is None and batcher is not None and expiry is None:
                # It waits for its batch in the state it is in. A row with a max_age goes
                # alone, with its own Message Expiry Interval (docs/contracts.md).
                too_large = batcher.add(replace(row, payload=payload))
                if too_large is None:
                    continue
            if too_large is not None:
                self._carrying.pop(row.id, None)
                self._quarantine(row, RowEvent.TOO_LARGE, too_large, state)
                continue
            mid = (self.link.publish(row.topic, payload, row.qos) if expiry is None else
                   self.link.publish(row.topic, payload, row.qos, expiry=max(1, math.ceil(expiry))))
            if mid is None:
                # Lost the connection while sending: this row and the rest go again.
                ledger.move(row.id, RowEvent.CONNECTION_LOST, state)
                continue
            self.window.add(mid, row)
            ledger.move(row.id, RowEvent.SEND, state)

    def _expiry(self, row: OutboxRow) -> float | None:
        """Seconds left of the row's stream's `max_age` (None: no max_age, or an age unknown:
        taken before the clock's sync in an earlier boot)."""
        max_age = self.max_ages.get((row.device, row.stream))
        if max_age is None:
            return None
        taken = row.taken
        if taken is None:
            return max_age - (self.clock.wall() - row.ts)
        if taken.boot != self.clock.boot_id:
            return None
        return max_age - (self.clock.monotonic() - taken.mono)

    def _payload(self, row: OutboxRow) -> bytes:
        """The bytes to send: as stored, re-based or marked (gateway.core.clock), and with the
        stream's notice of seqs dropped on purpose before this one."""
        payload = restamp(self.clock, row.payload, row.ts, row.taken)
        key = (row.epoch, row.device, row.stream)
        notice = self.outbox.notices.get(key)
        if notice is None or notice[1] >= row.seq:
            return payload
        env = decode(payload)
        if isinstance(env, Undecodable):
            return payload
        self._carrying[row.id] = (key, notice[1])
        return encode(replace(env, dropped=notice))

    def take_dropping(self) -> Dropping:
        """What the next commit drops and clears (`give_back` if it fails)."""
        taken, self.dropping = self.dropping, Dropping()
        return taken

    def give_back(self, dropping: Dropping) -> None:
        """A commit failed: what it was to drop and clear waits for the next one."""
        self.dropping.expired[:0] = dropping.expired
        self.dropping.notified[:0] = dropping.notified

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
                mid = publish_batch(batch, self.batcher, self.rows, self.link.publish)
                if mid is not None:
                    self.window.add(mid, batch.rows)
            if not batches:
                break
        self.batcher.schedule(self.wake)

    def flush(self) -> None:
        """Publish every waiting batch now, due or not (at a stop)."""
        if self.batcher is not None and self.link.connected:
            self._send_batches(flush=True)

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
        notice = self._carrying.pop(row.id, None)
        if notice is not None and outcome is AckOutcome.DELIVERED:
            self.dropping.notified.append(notice)
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
        return {} if self.batcher is None else self.batcher.figures()

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet acknowledged."""
        return len(self.window)
