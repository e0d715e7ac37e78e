"""Whether a consumer is confirming, and how hard to resend while none is. Pure.

Under end-to-end confirmation a durable row stays on the gateway after the
broker acknowledged it, until a consumer confirms it committed it. Two cases
need more than the per-row resend timer:

- A consumer that starts after the gateway (or comes back) never received the
  rows the broker took while nobody subscribed (mosquitto drops QoS 2 messages
  without a subscriber; a broker restarted without persistence forgot them).
  The first confirmation after a quiet spell (`sweep_quiet`, and at the first
  one of a run) arms a sweep: `SWEEP_DELAY` later (time for the confirmations
  of rows already on their way to arrive), every row the broker acknowledged
  before that first confirmation and still unconfirmed is sent again at once,
  instead of waiting out its timer. At worst a row the consumer was slow to
  confirm goes twice on the wire; the consumer drops the copy.
- With no consumer at all, resending every row on its doubling timer would
  fill a metered link for nothing. Once no confirmation has come for
  `absent_after` while acknowledged rows wait, the watch says the consumer is
  absent (the gateway logs one WARNING), and resends shrink to a probe of
  `probe_rows` rows, at most once per probe interval (doubling from the
  confirmation timeout up to `probe_cap`), until a confirmation arrives.

Times are monotonic seconds given by the caller; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.core.backoff import Backoff

SWEEP_QUIET = 10.0
SWEEP_DELAY = 3.0
ABSENT_AFTER = 120.0
PROBE_ROWS = 10
PROBE_CAP = 600.0


@dataclass
class ConfirmationWatch:
    """The state of one gateway's confirmations, fed by marks and periodic scans."""

    started: float
    timeout: float
    absent_after: float = ABSENT_AFTER
    sweep_quiet: float = SWEEP_QUIET
    probe_rows: int = PROBE_ROWS
    last_mark: float | None = None
    absent: bool = False
    sweep_at: float | None = None  # when the armed sweep runs
    sweep_cutoff: float = 0.0  # it resends rows acknowledged before this (monotonic)
    _next_probe: float = 0.0
    _probe: Backoff = field(init=False)

    def __post_init__(self) -> None:
        self._probe = Backoff(base=self.timeout, cap=max(self.timeout, PROBE_CAP))

    def marked(self, now: float) -> bool:
        """A trusted confirmation arrived; True when the consumer was absent until now."""
        quiet = now - (self.last_mark if self.last_mark is not None else self.started)
        if (self.last_mark is None or quiet >= self.sweep_quiet) and self.sweep_at is None:
            self.sweep_at = now + SWEEP_DELAY
            self.sweep_cutoff = now
        self.last_mark = now
        was_absent, self.absent = self.absent, False
        self._probe.reset()
        self._next_probe = 0.0
        return was_absent

    def silent_for(self, now: float) -> float:
        """Seconds since the last confirmation (or since the start, before the first)."""
        return now - (self.last_mark if self.last_mark is not None else self.started)

    def scan(self, now: float, oldest_held_age: float | None) -> bool:
        """A periodic look, given how long the oldest held row has waited (None: none
        waits); True when the consumer has just become absent (warn once)."""
        if oldest_held_age is None or self.absent:
            return False
        if self.silent_for(now) >= self.absent_after and oldest_held_age >= self.absent_after:
            self.absent = True
            self._next_probe = now + self._probe.next_delay()
            return True
        return False

    def resend_limit(self, now: float, batch: int) -> int:
        """How many overdue rows may be sent again now."""
        if not self.absent:
            return batch
        if now < self._next_probe:
            return 0
        self._next_probe = now + self._probe.next_delay()
        return min(batch, self.probe_rows)

    def take_sweep(self, now: float) -> float | None:
        """The cutoff (monotonic) of a sweep that is due now, once; None when none is."""
        if self.sweep_at is None or now < self.sweep_at:
            return None
        self.sweep_at = None
        return self.sweep_cutoff

    def more_to_sweep(self, cutoff: float) -> None:
        """The sweep found a full batch: the rest goes at the next look."""
        self.sweep_at, self.sweep_cutoff = 0.0, cutoff
