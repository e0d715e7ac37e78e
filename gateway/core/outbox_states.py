"""The life of an outbox row as data: its states, the events that move it, the table.

Pure, stdlib only. `TRANSITIONS` maps state -> event -> next state; any
pair it does not list is a bug in the caller, and `transition` raises
`IllegalTransition` for it. `describe_table()` renders the table as
Markdown and `describe_dot()` as a Graphviz graph.

A row is STORED when a group commit writes it. The publisher SENDs it
(IN_FLIGHT), or finds the link down (CONNECTION_LOST: to RESEND at the next
refill, ahead of both lanes) or the message too large for the broker
(TOO_LARGE: QUARANTINED). The PUBACK/PUBCOMP classifies it
(`gateway.core.inflight.classify_ack`): delivered (ACKED, deleted at the
next commit; or HELD, when the row waits for the consumer's end-to-end
confirmation), try again later (RETRY_WAIT until the back-off runs out,
then RESEND), or rejected (QUARANTINED). The next group commit writes the
settled state (COMMITTED): an ACKED row is DELETED, a QUARANTINED one moves
to the quarantine table, a HELD one gets `acked_at`. A HELD row is DELETED
when the consumer CONFIRMED its seq, or sent again when the confirmation is
overdue (CONFIRMATION_OVERDUE: the store clears `acked_at`, counts a resend).

Where each state lives: STORED and a written HELD or QUARANTINED are the
store's (`acked_at` NULL, `acked_at` set, a row of `quarantine`); IN_FLIGHT,
RESEND, RETRY_WAIT and the settled states not written yet are the
publisher's, kept in a `RowLedger`. A restart forgets the publisher's: every
row is then as the store has it (`state_in_store`), STORED or HELD; the
backlog sends a STORED one again, and a HELD one waits for its confirmation,
or for CONFIRMATION_OVERDUE to send it again (the publisher's lanes skip
HELD rows; SEND from HELD is for a caller that sends one on purpose). The backlog
can also meet a row that a resend already took out of its lane (SEND from
RESEND and RETRY_WAIT). A confirmation deletes its range of seqs from the
store whatever the publisher holds: the publisher learns it only for a row
it is to send again and no longer finds (CONFIRMED from RESEND); a row in
flight when its confirmation lands goes on, and its commit finds nothing to
mark. The resend scan runs before the commit it belongs to, so a row it
found held may be in flight again or quarantined by then
(CONFIRMATION_OVERDUE from IN_FLIGHT and QUARANTINED leaves it where it is).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from itertools import islice


class RowState(Enum):
    """Where a stored reading is in its life."""

    # Members are singletons: identity is their equality, and an identity hash keeps
    # the table's dict lookups in C (Enum's own hash is Python code run per lookup).
    __hash__ = object.__hash__

    STORED = "stored"
    RESEND = "resend"
    IN_FLIGHT = "in_flight"
    RETRY_WAIT = "retry_wait"
    ACKED = "acked"
    HELD = "held"
    QUARANTINED = "quarantined"
    DELETED = "deleted"


class RowEvent(Enum):
    """What happens to a row."""

    __hash__ = object.__hash__

    SEND = "send"
    CONNECTION_LOST = "connection_lost"
    TOO_LARGE = "too_large"
    ACK_DELIVERED = "ack_delivered"
    ACK_HELD = "ack_held"
    ACK_RETRY = "ack_retry"
    ACK_REJECTED = "ack_rejected"
    RETRY_DUE = "retry_due"
    COMMITTED = "committed"
    CONFIRMED = "confirmed"
    CONFIRMATION_OVERDUE = "confirmation_overdue"


S, E = RowState, RowEvent

STATE_MEANING: dict[RowState, str] = {
    S.STORED: "in the outbox, waiting for its lane (every row after a restart)",
    S.RESEND: "to go at the next refill, ahead of both lanes",
    S.IN_FLIGHT: "published, waiting for its PUBACK/PUBCOMP",
    S.RETRY_WAIT: "the broker said try later: waits for the retry back-off",
    S.ACKED: "broker-acknowledged: deleted at the next group commit",
    S.HELD: "broker-acknowledged, waiting for the consumer's confirmation (`acked_at`)",
    S.QUARANTINED: "rejected or too large: in the quarantine table from the next commit",
    S.DELETED: "gone from the outbox",
}

EVENT_MEANING: dict[RowEvent, str] = {
    E.SEND: "handed to the link, which gave it a packet id",
    E.CONNECTION_LOST: "the link was down when it was to go",
    E.TOO_LARGE: "over `max_payload_bytes` or the broker's maximum packet size",
    E.ACK_DELIVERED: "PUBACK/PUBCOMP with a success code",
    E.ACK_HELD: "the same, for a row that waits for the consumer (`confirmation: end-to-end`)",
    E.ACK_RETRY: "0x10 no matching subscribers, 0x92, 0x97: try again later",
    E.ACK_REJECTED: "any other failure code",
    E.RETRY_DUE: "the retry back-off ran out",
    E.COMMITTED: "a group commit wrote the row's settled state",
    E.CONFIRMED: "the consumer confirmed its seq (the store deletes it; a resend finds it gone)",
    E.CONFIRMATION_OVERDUE: "no confirmation within `confirmation_timeout` (doubling per resend)",
}

# Sending can fail before the packet goes: the link is down, or it is too large.
_OUT = {E.SEND: S.IN_FLIGHT, E.CONNECTION_LOST: S.RESEND, E.TOO_LARGE: S.QUARANTINED}

TRANSITIONS: dict[RowState, dict[RowEvent, RowState]] = {
    S.STORED: {**_OUT, E.CONFIRMED: S.DELETED},
    S.RESEND: {**_OUT, E.CONFIRMED: S.DELETED, E.CONFIRMATION_OVERDUE: S.RESEND},
    S.IN_FLIGHT: {
        E.ACK_DELIVERED: S.ACKED,
        E.ACK_HELD: S.HELD,
        E.ACK_RETRY: S.RETRY_WAIT,
        E.ACK_REJECTED: S.QUARANTINED,
        E.CONFIRMATION_OVERDUE: S.IN_FLIGHT,
    },
    S.RETRY_WAIT: {**_OUT, E.RETRY_DUE: S.RESEND, E.CONFIRMATION_OVERDUE: S.RESEND},
    S.ACKED: {E.COMMITTED: S.DELETED},
    S.HELD: {**_OUT, E.COMMITTED: S.HELD, E.CONFIRMED: S.DELETED,
             E.CONFIRMATION_OVERDUE: S.RESEND},
    S.QUARANTINED: {E.COMMITTED: S.QUARANTINED, E.CONFIRMATION_OVERDUE: S.QUARANTINED},
    S.DELETED: {},
}

# The states a group commit writes, and those that end a row's life.
SETTLED = frozenset(s for s, moves in TRANSITIONS.items() if E.COMMITTED in moves)
TERMINAL = frozenset(s for s, moves in TRANSITIONS.items() if set(moves.values()) <= {s})


class IllegalTransition(ValueError):
    """A row was moved along a transition the table does not have."""

    def __init__(self, state: RowState, event: RowEvent) -> None:
        allowed = ", ".join(e.name for e in TRANSITIONS[state]) or "nothing (it is terminal)"
        super().__init__(f"an outbox row in state {state.name} cannot take {event.name}; "
                         f"from {state.name} the table allows {allowed}")
        self.state = state
        self.event = event


def transition(state: RowState, event: RowEvent) -> RowState:
    """The state `event` moves a row in `state` to.

    Raises:
        IllegalTransition: the table has no such move.
    """
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(state, event) from None


def state_in_store(acked: bool) -> RowState:
    """The state of a row at rest in the outbox: HELD when `acked_at` is set."""
    return S.HELD if acked else S.STORED


_Place = tuple[RowState, dict[int, str]]  # a state and the ledger's rows in it


class RowLedger:
    """The state of every row the publisher has in hand, by row id.

    Rows at rest in the store are not kept: a row enters with its first
    event (the caller says what state it was at rest in) and leaves when it
    is DELETED or a commit wrote its state (COMMITTED). Rows of each state
    are kept in the order they reached it. The settled rows (ACKED, HELD,
    QUARANTINED) are exactly those the next commit is to write.
    """

    def __init__(self) -> None:
        # Per state, its rows in the order they came, each with a note (a quarantine's reason).
        self._rows: dict[RowState, dict[int, str]] = {s: {} for s in RowState}
        self._gone: dict[int, str] = {}  # stands for "no longer kept" in `_moves`; never written
        # The table again, each next state paired with the rows it goes into: one lookup
        # finds both, and a kept row's entry is the pair it was moved by (no allocation).
        self._moves: dict[RowState, dict[RowEvent, _Place]] = {
            state: {event: (new, self._gone if new is S.DELETED or event is E.COMMITTED
                            else self._rows[new]) for event, new in moves.items()}
            for state, moves in TRANSITIONS.items()}
        self._state: dict[int, _Place] = {}

    def __len__(self) -> int:
        return len(self._state)

    def state(self, row_id: int, at_rest: RowState = S.STORED) -> RowState:
        """The row's state; `at_rest` for a row the ledger does not hold."""
        entry = self._state.get(row_id)
        return at_rest if entry is None else entry[0]

    def move(self, row_id: int, event: RowEvent, at_rest: RowState = S.STORED,
             note: str = "") -> RowState:
        """Apply `event` to a row (in state `at_rest` when the ledger does not hold it).

        Raises:
            IllegalTransition: the table has no such move; the row stays as it was.
        """
        entry = self._state.get(row_id)
        old = at_rest if entry is None else entry[0]
        try:  # `transition`, on the paired table: this runs a few times per reading
            place = self._moves[old][event]
        except KeyError:
            raise IllegalTransition(old, event) from None
        new, rows = place
        if new is old and rows is not self._gone:
            return new  # a move to where it is changes nothing (its place in line, its note)
        if entry is not None:
            del entry[1][row_id]
            if rows is self._gone:
                del self._state[row_id]
                return new
        elif rows is self._gone:
            return new
        self._state[row_id] = place
        rows[row_id] = note
        return new

    def move_all(self, state: RowState, event: RowEvent) -> None:
        """Apply `event` to every row in `state`, oldest first."""
        for row_id in list(self._rows[state]):
            self.move(row_id, event)

    def ids(self, state: RowState, limit: int | None = None) -> list[int]:
        """Rows in `state`, the oldest first; at most `limit` of them."""
        rows = self._rows[state]
        return list(rows if limit is None else islice(rows, limit))

    def count(self, state: RowState) -> int:
        """How many rows the ledger keeps in `state` (never STORED or DELETED: the store's)."""
        return len(self._rows[state])

    def counts(self) -> dict[RowState, int]:
        """Rows per state, for the states that hold any."""
        return {s: len(rows) for s, rows in self._rows.items() if rows}

    def settled(self) -> tuple[list[int], list[tuple[int, str]], list[int]]:
        """What the next commit writes: rows ACKED, QUARANTINED (with the reason), HELD."""
        return (list(self._rows[S.ACKED]), list(self._rows[S.QUARANTINED].items()),
                list(self._rows[S.HELD]))

    def committed(self, acked: Iterable[int], quarantined: Iterable[tuple[int, str]],
                  held: Iterable[int]) -> None:
        """A commit wrote what `settled` gave: those rows leave the ledger.

        A row that moved on since (a held row sent again) is left as it is.
        """
        for state, ids in ((S.ACKED, acked), (S.QUARANTINED, (i for i, _ in quarantined)),
                           (S.HELD, held)):
            rows = self._rows[state]
            for row_id in ids:
                if row_id in rows:
                    self.move(row_id, E.COMMITTED)


def describe_table() -> str:
    """The transition table as Markdown: one row per state, one column per event."""
    events = list(RowEvent)
    lines = ["| state | " + " | ".join(e.name for e in events) + " |",
             "|---|" + "---|" * len(events)]
    for state, moves in TRANSITIONS.items():
        cells = [moves[e].name if e in moves else "·" for e in events]
        lines.append(f"| **{state.name}** | " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- **{s.name}**: {STATE_MEANING[s]}" for s in RowState)
    lines.append("")
    lines.extend(f"- `{e.name}`: {EVENT_MEANING[e]}" for e in RowEvent)
    return "\n".join(lines) + "\n"


def describe_dot() -> str:
    """The transition table as a Graphviz digraph (`dot -Tsvg`)."""
    lines = ["digraph outbox_row {", "  rankdir=LR;", "  node [shape=box];"]
    lines.extend(f"  {s.name} [shape=doublecircle];" for s in RowState if s in TERMINAL)
    for state, moves in TRANSITIONS.items():
        lines.extend(f'  {state.name} -> {new.name} [label="{event.name}"];'
                     for event, new in moves.items())
    lines.append("}")
    return "\n".join(lines) + "\n"
