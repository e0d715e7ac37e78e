"""The consumer's batch between two commits, held once per identity.

Pure. While the database is down the broker redelivers what is not yet
acknowledged, after each reconnect; the inbox keeps one reading per identity
(the first copy, as the database would), counting the further copies a sender
sent (duplicates, as the database counts them), and one refusal per distinct
refused payload, with the packet ids of the copies to acknowledge after the
commit.
Only the ids of the current connection are kept: one of an earlier
connection means something else now (the broker redelivers that message).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gateway.cloud.admission import Refusal
from gateway.core.envelope import Envelope

Identity = tuple[str, str, str, str, int]  # (gateway, epoch, device, stream, seq)


@dataclass(frozen=True, slots=True)
class Ack:
    """One message copy to acknowledge after the commit."""

    mid: int
    qos: int
    connection: int


@dataclass(slots=True)
class Held:
    """A reading waiting for the commit, with the topic it came on."""

    env: Envelope
    topic: str
    acks: list[Ack] = field(default_factory=list)
    repeats: int = 0  # further copies sent (not redeliveries of ours after a reconnect)


def identity(env: Envelope) -> Identity:
    """A reading's identity."""
    return (env.gateway, env.epoch, env.device, env.stream, env.seq)


class Inbox:
    """Readings and refusals waiting for the next commit."""

    def __init__(self) -> None:
        self.readings: dict[Identity, Held] = {}
        self.refused: dict[tuple[str, bytes], tuple[Refusal, list[Ack]]] = {}
        self.copies = 0  # messages added, every copy counted

    def __len__(self) -> int:
        return len(self.readings) + len(self.refused)

    def add(self, ack: Ack | None, topic: str, item: Envelope | Refusal) -> None:
        """Hold one message; `ack` is None for QoS 0."""
        self.copies += 1
        if isinstance(item, Refusal):
            key = (item.topic, item.digest)
            acks = self.refused.setdefault(key, (item, []))[1]
        else:
            held = self.readings.get(identity(item))
            if held is None:
                held = self.readings[identity(item)] = Held(item, topic)
            elif ack is None or not held.acks or held.acks[-1].connection == ack.connection:
                held.repeats += 1  # a copy the sender sent again: a duplicate to count
            acks = held.acks
        if ack is not None:
            if acks and acks[-1].connection != ack.connection:
                acks.clear()  # ids of an earlier connection cannot be acknowledged any more
            acks.append(ack)

    def envelopes(self) -> list[Envelope]:
        """The distinct readings held."""
        return [held.env for held in self.readings.values()]

    def repeats(self) -> list[Envelope]:
        """One entry per further copy of a held reading that the sender sent again (stored
        as what it is: a duplicate)."""
        return [held.env for held in self.readings.values() for _ in range(held.repeats)]

    def refusals(self) -> list[Refusal]:
        """The distinct refusals held."""
        return [refusal for refusal, _ in self.refused.values()]

    def reject_counts(self) -> Counter[str]:
        """The refusals held, by reason."""
        return Counter(refusal.reason for refusal, _ in self.refused.values())

    def acks(self, connection: int) -> list[Ack]:
        """Every copy of the current connection to acknowledge."""
        found = [ack for held in self.readings.values() for ack in held.acks]
        found += [ack for _, acks in self.refused.values() for ack in acks]
        return [ack for ack in found if ack.connection == connection and ack.qos > 0]

    def topic_of(self, env: Envelope) -> str:
        """The topic a held reading came on."""
        held = self.readings.get(identity(env))
        return held.topic if held is not None else ""
