"""The fault schedule: the seven fault kinds, the order they come in, and the figures of each.

Everything random in a run is drawn here from the seed, up front, so the same
seed gives the same faults in the same order with the same line counts and
stall lengths, whatever the timing. `Episode` records one fault as it
happened: the lines the device sent around it and what was seen.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

KINDS = ("broker_kill", "gateway_kill", "consumer_kill", "link", "serial_unplug", "disk_full",
         "slow_link")
KIND_LABELS = {
    "broker_kill": "broker SIGKILL",
    "gateway_kill": "gateway SIGKILL",
    "consumer_kill": "consumer SIGKILL",
    "link": "link stall/cut",
    "serial_unplug": "serial unplug",
    "disk_full": "disk full",
    "slow_link": "slow link",
}
# How each injected fault is counted in the table (the link kind has two variants).
FAULT_COUNTERS = ("broker SIGKILL", "gateway SIGKILL", "consumer SIGKILL", "link stall",
                  "link cut", "serial unplug", "disk full", "slow link")


def schedule(rng: random.Random, kinds: tuple[str, ...] = KINDS) -> Iterator[str]:
    """Fault kinds forever: rounds that each hold every kind once, shuffled."""
    while True:
        round_ = list(kinds)
        rng.shuffle(round_)
        yield from round_


@dataclass(frozen=True)
class Params:
    """The random figures of one episode, all drawn up front so the schedule
    depends on the seed only, never on timing."""

    before: int
    during: int
    after: int
    stall_seconds: float
    disk_seconds: float

    @classmethod
    def draw(cls, rng: random.Random, stall_max: float) -> Params:
        """Half the stalls are short (1-3 s: the link only hangs), half long (85-100% of
        `stall_max`: past the 10-11 s after which the gateway, keepalive 5 s, gives the link up)."""
        before, during, after = rng.randint(20, 60), rng.randint(20, 60), rng.randint(20, 60)
        short, long_ = rng.uniform(1.0, min(3.0, stall_max)), rng.uniform(0.85, 1.0) * stall_max
        stall = long_ if rng.random() < 0.5 else short
        return cls(before=before, during=during, after=after, stall_seconds=stall,
                   disk_seconds=rng.uniform(0.5, 2.0))


@dataclass
class Episode:
    """One fault and the lines the device sent around it."""

    index: int
    kind: str
    variant: str
    first_line: int
    last_line: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    freed_line: int | None = None  # disk full: the first line sent after the space was freed
    resume_seconds: float | None = None  # disk full: from freeing to a reading stored again
