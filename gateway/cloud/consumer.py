"""`mqtt-gateway consume`: subscribe, deduplicate, store, then acknowledge.

The inbox pattern: each message is acknowledged to the broker only after the
transaction that stores it (or finds it is a duplicate) has committed. The
subscription asks for QoS 1 even for exactly-once streams: with paho's
manual acks a QoS 2 message is handed over at PUBREL and a consumer that
dies before committing would lose it (the broker only resends the PUBREL).
QoS 1 redelivers the message itself, and dedup by identity makes the
second copy harmless. A persistent session (stable client id, no clean
start, long session expiry) keeps messages queued while the consumer is down.

Each message is checked as it arrives (gateway.cloud.admission: its size,
its envelope, its names, and that it carries the identity its topic names);
a refused one is counted, kept in `rejected_payloads` and acknowledged with
the batch. A row the database still refuses is isolated from its batch
(gateway.cloud.isolation); a database that is down keeps the whole batch
unacknowledged and the commit is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable

from paho.mqtt.reasoncodes import ReasonCode

from gateway.cloud.admission import Refusal, admit_all
from gateway.cloud.database import ReadingsDB, open_readings_db
from gateway.cloud.inbox import Ack, Inbox, identity
from gateway.cloud.isolation import Stored, store_isolating
from gateway.cloud.snapshot import ConsumerSnapshot
from gateway.config.consumer_config import ConsumerConfig, mask_passwords
from gateway.config.credentials import BrokerSecrets
from gateway.core.backoff import Backoff
from gateway.core.confirmation import (
    Mark,
    confirm_topic,
    encode_confirmations,
    is_confirm_topic,
    prefix_of,
    ranges,
)
from gateway.core.envelope import Envelope
from gateway.core.presence import GatewayStatus, decode_status, is_status_topic
from gateway.core.topics import MAX_TOPIC_BYTES
from gateway.mqtt.link import Message, MqttLink, Session
from gateway.ops.supervision import Supervision
from gateway.ops.watchdog import Progress

log = logging.getLogger("gateway.consumer")

SUBSCRIBE_QOS = 1
RECEIVE_MAXIMUM = 1000  # unacknowledged QoS 1 messages the broker may send us at once
HELD_BATCHES = 4  # while the database is down, QoS 0 messages past this many batches are dropped
RESUBSCRIBE_DELAY = 5.0
# The Maximum Packet Size the consumer asks of the broker, in max_payloads: a payload up to
# this is received, refused and counted (`too_large`); the broker drops a larger one unsent.
PACKET_PAYLOADS = 4
_SKIP_DETAIL = {"bad_field": "text the database cannot store (NUL or a lone surrogate)",
                "seq_jump": "too far beyond the stream's highest seq (max_seq_jump)"}


class Consumer:
    """Batches incoming messages, commits them, then acknowledges them."""

    def __init__(self, config: ConsumerConfig, db: ReadingsDB,
                 secrets: BrokerSecrets | None = None) -> None:
        self.config = config
        self.db = db
        self.link = MqttLink(config.endpoints, config.client_id, keepalive=config.keepalive,
                             session_expiry=config.session_expiry, clean_first=False,
                             manual_ack=True,
                             receive_maximum=min(config.commit_batch, RECEIVE_MAXIMUM),
                             max_packet_size=PACKET_PAYLOADS * config.max_payload
                             + MAX_TOPIC_BYTES + 1024, secrets=secrets)
        self.link.on_up = self._on_up
        self.link.on_down = self._on_down
        self.link.on_message = self._on_message
        self.link.on_subscribe = self._on_subscribe
        self._inbox = Inbox()
        # Gateways' `_status` messages, stored apart: (ack, topic, payload).
        self._statuses: list[tuple[Ack | None, str, bytes]] = []
        self._commit_now = asyncio.Event()
        self._reasons_seen: set[str] = set()
        self._overflow = 0
        self.confirmations_sent = 0
        self.fresh = 0
        self.duplicates = 0
        self.rejects: Counter[str] = Counter()  # by reason, for the metrics endpoint
        self.on_committed: Callable[[list[Envelope]], None] | None = None  # metrics: lag
        self.committer_at = time.monotonic()  # the watchdog's proof of progress
        self._down_logged = False

    def _on_up(self, session: Session) -> None:
        self._down_logged = False
        log.info("connected to broker %s (MQTT %s) as %s (session %s); subscribing to %s "
                 "at QoS %d", self.link.address, session.protocol, self.config.client_id,
                 "resumed" if session.session_present else "new", self.config.subscribe,
                 min(SUBSCRIBE_QOS, self.link.max_qos))
        self._subscribe()

    def _subscribe(self) -> None:
        self.link.subscribe(self.config.subscribe, qos=SUBSCRIBE_QOS)

    def _on_subscribe(self, mid: int, codes: list[ReasonCode]) -> None:
        refused = [code for code in codes if code.is_failure]
        if refused:
            log.error("broker %s refused the subscription to %s: %s; trying again in %.0fs",
                      self.link.address, self.config.subscribe, refused[0], RESUBSCRIBE_DELAY)
            asyncio.get_running_loop().call_later(RESUBSCRIBE_DELAY, self._subscribe)
            return
        log.info("subscribed to %s (granted QoS %d)", self.config.subscribe, codes[0].value)

    def _on_down(self, reason: str) -> None:
        if not self._down_logged:
            self._down_logged = True
            log.warning("%s; unacknowledged messages will be redelivered after reconnecting",
                        reason)

    @property
    def rejected(self) -> int:
        """Payloads rejected so far, of every reason."""
        return self.rejects.total()

    def _on_message(self, message: Message) -> None:
        topic = message.topic  # paho decodes it on every access
        if is_confirm_topic(topic):
            # Confirmations (ours or another consumer's) are for gateways, not readings.
            if message.qos > 0:
                self.link.ack(message.mid, message.qos)
            return
        if is_status_topic(topic):
            # Bounded like the batch: a gateway sends one per connect and device change.
            ack = Ack(message.mid, message.qos, self.link.generation) if message.qos > 0 else None
            self._statuses.append((ack, topic, bytes(message.payload)))
            if len(self._statuses) >= self.config.commit_batch:
                self._commit_now.set()
            return
        if message.qos == 0 and len(self._inbox) >= HELD_BATCHES * self.config.commit_batch:
            # The database is not keeping up (or down). QoS 1 is bounded by our
            # Receive Maximum; QoS 0 has no flow control, so it is shed and counted.
            self._overflow += 1
            return
        ack = Ack(message.mid, message.qos, self.link.generation) if message.qos > 0 else None
        # One item per reading: a v1 message holds one, a v2 batch several, each admitted
        # (or refused and counted) on its own. The message is acknowledged once, after the
        # commit that stores them all (they all wait in this inbox).
        for item in admit_all(topic, message.payload, self.config.topics,
                              self.config.max_payload):
            if isinstance(item, Refusal):
                self._note_reject(item.reason, f"topic={item.topic} payload skipped: "
                                  f"{item.reason}: {item.detail}")
            self._inbox.add(ack, topic, item)
            ack = None
        if len(self._inbox) >= self.config.commit_batch:
            self._commit_now.set()

    def commit(self) -> None:
        """Store the batch, then acknowledge every copy of it and confirm what is stored.

        Raises:
            Exception: the database error; the batch is kept for the next try.
        """
        if self._statuses:
            self._commit_statuses()
        inbox = self._inbox
        if not inbox:
            return
        rejects = inbox.reject_counts()
        if self._overflow:
            rejects["at_most_once_overflow"] += self._overflow
        readings = inbox.envelopes()
        stored = store_isolating(self.db, readings + inbox.repeats(), rejects, inbox.refusals(),
                                 inbox.topic_of)
        self._overflow = 0
        self._inbox = Inbox()
        self.fresh += stored.fresh
        self.duplicates += stored.duplicates
        self.rejects.update(stored.rejects)
        kept = self._kept(readings, stored, inbox)
        if self.on_committed is not None and kept:
            self.on_committed(kept)
        if self.link.connected:
            self._ack(inbox.acks(self.link.generation))
        to_confirm = [(prefix, env) for env in kept
                      if env.confirm and (prefix := prefix_of(inbox.topic_of(env))) is not None]
        if to_confirm:
            self._confirm(to_confirm)

    def _kept(self, readings: list[Envelope], stored: Stored, inbox: Inbox) -> list[Envelope]:
        """The readings now in `readings`; logs the ones the database layer refused."""
        for env, reason in stored.refused:
            log.error("topic=%s device=%s stream=%s seq=%d: the database refuses the reading "
                      "(%s); kept in rejected_payloads", inbox.topic_of(env)[:200],
                      env.device[:64], env.stream[:64], env.seq, reason)
        if not stored.skipped:
            return readings
        for reason, env in stored.skipped:
            if reason != "database_refused":  # logged above, each one
                self._note_reject(reason, f"topic={inbox.topic_of(env)} seq={env.seq}: reading "
                                  f"skipped: {reason}: " + _SKIP_DETAIL.get(reason, ""))
        skipped = {identity(env) for _, env in stored.skipped}
        return [env for env in readings if identity(env) not in skipped]

    def _commit_statuses(self) -> None:
        """Store the latest status of each gateway in `gateways`, then acknowledge them."""
        latest: dict[str, GatewayStatus] = {}
        rejects: Counter[str] = Counter()
        for _, topic, payload in self._statuses:
            status = decode_status(payload)
            if not isinstance(status, str) and status.gateway != self.config.topics.status_gateway(
                    topic):
                status = f"gateway {status.gateway!r} on a topic that names another"
            if isinstance(status, str):
                rejects["bad_status"] += 1
                self._note_reject("bad_status", f"topic={topic[:200]}: status skipped: "
                                  f"bad_status: {status}")
            else:
                latest[status.gateway] = status
        if latest:
            self.db.store_statuses(list(latest.values()))
            for status in latest.values():
                log.info("gateway %s is %s%s (epoch %s, version %s, devices up %d of %d)",
                         status.gateway, status.state,
                         f" ({status.reason})" if status.reason else "", status.epoch,
                         status.version, sum(v == "up" for v in status.devices.values()),
                         len(status.devices))
        self.rejects.update(rejects)
        statuses, self._statuses = self._statuses, []
        if self.link.connected:
            self._ack([ack for ack, _, _ in statuses
                       if ack is not None and ack.connection == self.link.generation])

    def _ack(self, acks: list[Ack]) -> None:
        """Acknowledge message copies of the current connection: QoS 1 in one write."""
        self.link.ack_all([ack.mid for ack in acks if ack.qos == 1])
        for ack in acks:
            if ack.qos > 1:
                self.link.ack(ack.mid, ack.qos)

    def _confirm(self, committed: list[tuple[str, Envelope]]) -> None:
        """Tell each gateway which seqs of its streams are now committed (one message each)."""
        seqs: dict[tuple[str, str], dict[tuple[str, str, str], list[int]]] = {}
        for prefix, env in committed:
            streams = seqs.setdefault((prefix, env.gateway), {})
            streams.setdefault((env.epoch, env.device, env.stream), []).append(env.seq)
        for (prefix, gateway), streams in seqs.items():
            marks = [Mark(epoch, device, stream, first, last)
                     for (epoch, device, stream), found in sorted(streams.items())
                     for first, last in ranges(found)]
            for payload in encode_confirmations(gateway, marks):
                if self.link.publish(confirm_topic(prefix), payload, 1) is not None:
                    self.confirmations_sent += 1

    def _note_reject(self, reason: str, line: str) -> None:
        if reason not in self._reasons_seen:
            self._reasons_seen.add(reason)
            log.warning("%s (further ones are counted in consumer_rejects)", line)

    async def _committer(self) -> None:
        backoff = Backoff(base=0.2, cap=10.0)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commit_now.wait(), self.config.commit_interval)
            self._commit_now.clear()
            self.committer_at = time.monotonic()
            try:
                self.commit()
                backoff.reset()
            except Exception as exc:  # noqa: BLE001 - any database error: keep the batch, retry
                delay = backoff.next_delay()
                log.error("database %s: commit failed (%s); %d messages (%d distinct) kept "
                          "unacknowledged, retrying in %.1fs", self.config.database_label,
                          mask_passwords(str(exc)), self._inbox.copies, len(self._inbox), delay)
                await asyncio.sleep(delay)

    async def _summaries(self) -> None:
        last = (-1, -1, -1)
        while True:
            await asyncio.sleep(self.config.summary_interval)
            figures = (self.fresh, self.duplicates, self.rejected)
            if figures != last:
                last = figures
                log.info("summary: stored %d, duplicates dropped %d, payloads rejected %d",
                         *figures)

    async def run(self, stop: asyncio.Event, supervision: Supervision | None = None) -> bool:
        """Consume until `stop` is set; commit and acknowledge what is held."""
        log.info("consumer %s starting: database %s", self.config.client_id,
                 self.config.database_label)
        tasks = [asyncio.create_task(self.link.run(), name="mqtt"),
                 asyncio.create_task(self._committer(), name="committer"),
                 asyncio.create_task(self._summaries(), name="summaries")]
        if supervision is not None:
            supervision.ready(
                f"consuming {self.config.subscribe} into {self.config.database_label}",
                lambda: Progress(time.monotonic(), self.committer_at,
                                 not any(t.done() for t in tasks)),
                self.config.commit_interval, self._describe)
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
        for task in failed:
            log.error("task %s failed: %r; stopping", task.get_name(), task.exception())
        if supervision is not None:
            supervision.stopping("stopping: committing and acknowledging what is held")
        try:
            self.commit()
        except Exception as exc:  # noqa: BLE001 - unacknowledged messages will be redelivered
            log.error("database %s: final commit failed (%s)", self.config.database_label,
                      mask_passwords(str(exc)))
        if self.link.connected and self.link.client.socket() is not None:
            self.link.client.loop_write()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("consumer stopped: stored %d, duplicates dropped %d, rejected %d",
                 self.fresh, self.duplicates, self.rejected)
        return not failed

    def metrics_snapshot(self) -> ConsumerSnapshot:
        """The figures the metrics collector exports (read from the metrics thread)."""
        return ConsumerSnapshot(
            committed=self.fresh, duplicates=self.duplicates, rejects=dict(self.rejects),
            broker_connected=self.link.connected, connections=self.link.connections,
            confirmations_sent=self.confirmations_sent, broker_url=str(self.link.address))

    def _describe(self) -> str:
        state = "connected" if self.link.connected else "broker unreachable"
        return (f"{state}; stored {self.fresh}, duplicates {self.duplicates}, "
                f"rejected {self.rejected}")


async def _serve(config: ConsumerConfig, secrets: BrokerSecrets | None,
                 database_password: str | None) -> bool:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    db = open_readings_db(config.database, config.max_seq_jump, database_password)
    consumer = Consumer(config, db, secrets)
    metrics: MetricsEndpoint | None = None
    if config.metrics is not None:
        from gateway.cloud.metrics import (  # noqa: PLC0415
            CONSUMER_METRICS,
            LAG_BUCKETS,
            LAG_HISTOGRAM,
            ConsumerCollector,
            lag_observer,
        )
        from gateway.ops.metrics import MetricsEndpoint  # noqa: PLC0415

        metrics = MetricsEndpoint(
            config.metrics, ConsumerCollector(consumer.metrics_snapshot, config.database,
                                              database_password),
            CONSUMER_METRICS, LAG_HISTOGRAM, LAG_BUCKETS)
        consumer.on_committed = lag_observer(metrics)
    supervision = Supervision(metrics=metrics)
    try:
        return await consumer.run(stop, supervision)
    finally:
        await supervision.close()
        db.close()


def consume(config: ConsumerConfig, secrets: BrokerSecrets | None = None,
            database_password: str | None = None) -> int:
    """Run the consumer until SIGTERM/SIGINT; the process exit code."""
    try:
        ok = asyncio.run(_serve(config, secrets, database_password))
    except Exception as exc:  # noqa: BLE001 - e.g. database unreachable at start
        log.error("consumer cannot run: %s", mask_passwords(str(exc)))
        return 1
    return 0 if ok else 1


