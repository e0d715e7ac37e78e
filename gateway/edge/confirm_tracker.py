"""The gateway's side of end-to-end confirmation (`confirmation: end-to-end`).

Rows of exactly-once streams stay in the outbox after the broker's PUBCOMP
until the consumer confirms it committed them: it publishes per-stream
ranges of committed seqs to `{topic_prefix}/_confirm`. A range is trusted only
for an (epoch, device, stream) this gateway knows and seqs it has handed out;
anything else is ignored, counted and logged once per reason. A held row
whose confirmation does not come within `confirmation_timeout` (doubling per
resend, up to 32x) is sent again. `ConfirmationWatch` (gateway/core) decides
when a consumer that appears gets every older held row at once (a sweep) and
when no consumer is confirming at all (one WARNING, then only small probes).
In the row's life (`gateway.core.outbox_states`) the marks are CONFIRMED and
the rows sent again CONFIRMATION_OVERDUE; the store applies both
(`gateway.store.confirmations`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from gateway.core.clock import steady_time
from gateway.core.confirmation import (
    Mark,
    Undecodable,
    confirm_topic,
    decode_marks,
    trusted_range,
)
from gateway.core.confirmation_watch import ConfirmationWatch
from gateway.mqtt.link import Message, MqttLink
from gateway.store.confirmations import Confirmations
from gateway.store.outbox import Outbox

log = logging.getLogger("gateway.confirm")

RESEND_BATCH = 1000
RESEND_SCAN_EVERY = 1.0  # seconds between looks for overdue confirmations
RESEND_LOG_EVERY = 60.0  # seconds between the lines that count overdue resends


class ConfirmationTracker:
    """Collects the consumer's confirmations for the next group commit."""

    def __init__(self, link: MqttLink, outbox: Outbox, prefix: str, timeout: float,
                 config_path: str = "the gateway config") -> None:
        self._scanned_at = 0.0
        self._resend_logged: tuple[float, int] = (float("-inf"), 0)  # (when, resent then)
        self.watch = ConfirmationWatch(started=time.monotonic(), timeout=timeout)
        self._prefix = prefix
        self._config_path = config_path
        self.link = link
        self.outbox = outbox
        self.topic = confirm_topic(prefix)
        self.timeout = timeout
        self._marks: list[tuple[str, str, str, int, int]] = []
        self.accepted = 0
        self.ignored: Counter[str] = Counter()
        self.ignored_total = 0  # the sum of `ignored`, for the metrics thread
        self.resent = 0
        link.on_message = self.on_message

    def subscribe(self) -> None:
        """Subscribe to the confirmation topic (after every CONNACK)."""
        self.link.subscribe(self.topic, qos=1)

    def on_message(self, message: Message) -> None:
        """Check one confirmation message and keep its trustworthy marks."""
        decoded = decode_marks(bytes(message.payload))
        if isinstance(decoded, Undecodable):
            self._ignore(decoded.reason, f"topic {message.topic}: {decoded.detail}")
            return
        gateway, marks = decoded
        if gateway != self.outbox.gateway_id:
            self._ignore("confirm_other_gateway", f"confirmation for gateway {gateway!r}")
            return
        accepted = self.accepted
        self._accept(marks)
        if self.accepted > accepted and self.watch.marked(time.monotonic()):
            log.info("confirmations resumed after %.0fs without one: the readings that waited "
                     "are sent again", self.watch.silent_for(time.monotonic()))

    def _accept(self, marks: list[Mark]) -> None:
        for mark in marks:
            trusted = trusted_range(mark, self.outbox.issued(mark.epoch, mark.device, mark.stream),
                                    mark.epoch == self.outbox.epoch)
            if isinstance(trusted, str):
                self._ignore(trusted, f"device={mark.device} stream={mark.stream} "
                                      f"epoch={mark.epoch} seq={mark.first}..{mark.last}")
                continue
            self.accepted += 1
            self._marks.append((mark.epoch, mark.device, mark.stream, *trusted))

    def _ignore(self, reason: str, detail: str) -> None:
        first = reason not in self.ignored
        self.ignored[reason] += 1
        self.ignored_total += 1
        log.log(logging.WARNING if first else logging.DEBUG,
                "ignored a confirmation on %s: %s: %s%s", self.topic, reason, detail,
                " (further ones are counted)" if first else "")

    def restore(self, marks: list[tuple[str, str, str, int, int]]) -> None:
        """Give back the marks of a commit that failed, for the next one."""
        self._marks[:0] = marks

    def take(self, held: list[int]) -> tuple[Confirmations, list[int]]:
        """What the next commit settles, and the rows to send again now: a sweep's, or the
        overdue ones (looked for at most every RESEND_SCAN_EVERY seconds)."""
        now = time.monotonic()
        resend = self._swept(now)
        if resend is None:
            resend = self._scan(now)
        self.resent += len(resend)
        self._note_unacked()
        marks, self._marks = self._marks, []
        return Confirmations(held, marks, resend), resend

    def _scan(self, now: float) -> list[int]:
        """The overdue rows, counted in one log line a minute at most."""
        if now - self._scanned_at < RESEND_SCAN_EVERY:
            return []
        self._scanned_at = now
        resend = self._overdue(now)
        when, logged = self._resend_logged
        if resend and now - when >= RESEND_LOG_EVERY:
            log.info("%d readings broker-acknowledged but not confirmed within %.0fs+ were sent "
                     "again since the last such line", self.resent + len(resend) - logged,
                     self.timeout)
            self._resend_logged = (now, self.resent + len(resend))
        return resend

    def _swept(self, now: float) -> list[int] | None:
        """The rows of a sweep that is due (see ConfirmationWatch), or None."""
        cutoff = self.watch.take_sweep(now)
        if cutoff is None:
            return None
        resend = self.outbox.held_before(steady_time() - (now - cutoff), RESEND_BATCH)
        if len(resend) == RESEND_BATCH:
            self.watch.more_to_sweep(cutoff)
        if resend:
            log.info("a consumer confirms: %d readings the broker took before it did and that "
                     "are still unconfirmed are sent again", len(resend))
        return resend

    def _note_unacked(self) -> None:
        """Count (and log once) marks of the last commits that covered rows the broker has
        not acknowledged: a forged confirmation, or a genuine one that overtook a PUBACK."""
        new = self.outbox.marks_unacked - self.ignored["confirm_not_acked"]
        if new > 0:
            self._ignore("confirm_not_acked", f"{new} marks covered readings the broker has "
                         "not acknowledged; those readings stay stored")
            self.ignored["confirm_not_acked"] += new - 1
            self.ignored_total += new - 1

    def _overdue(self, now: float) -> list[int]:
        """Held rows to send again now: all overdue ones, or a probe while none confirms."""
        oldest = self.outbox.oldest_held()
        age = None if oldest is None else max(0.0, steady_time() - oldest)
        if self.watch.scan(now, age):
            log.warning(
                "no consumer has confirmed anything for %.0fs while the broker accepts readings "
                "(the oldest has waited %.0fs): no `mqtt-gateway consume` is confirming; run "
                "one subscribed to %s/#, or set `confirmation: broker` in %s. The readings stay "
                "stored and a few are sent again with a capped backoff until one confirms",
                self.watch.silent_for(now), age or 0.0, self._prefix, self._config_path)
        limit = self.watch.resend_limit(now, RESEND_BATCH)
        return self.outbox.due_for_resend(steady_time(), self.timeout, limit) if limit else []

    def figures(self) -> dict[str, object]:
        """What `status` shows of the confirmations (the runtime snapshot)."""
        now = time.monotonic()
        return {"confirmations_accepted": self.accepted,
                "readings_confirmed": self.outbox.confirmed,
                "confirmations_ignored": dict(self.ignored),
                "resent_unconfirmed": self.resent,
                "confirmation_silent_s": round(self.watch.silent_for(now), 1),
                "consumer_absent": self.watch.absent}
