"""The outbox row's life-cycle table, checked pair by pair, and the publisher's ledger of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.outbox_states import (
    EVENT_MEANING,
    SETTLED,
    STATE_MEANING,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    RowEvent,
    RowLedger,
    RowState,
    describe_dot,
    describe_table,
    state_in_store,
    transition,
)

S, E = RowState, RowEvent
PAIRS = [(s, e) for s in RowState for e in RowEvent]

# -- a small model of the same life, told as rules rather than as a table ----------
GOES_OUT = {E.SEND: S.IN_FLIGHT, E.CONNECTION_LOST: S.RESEND, E.TOO_LARGE: S.QUARANTINED}
ACK_TO = {E.ACK_DELIVERED: S.ACKED, E.ACK_HELD: S.HELD, E.ACK_RETRY: S.RETRY_WAIT,
          E.ACK_REJECTED: S.QUARANTINED}
WAITING_TO_GO = {S.STORED, S.RESEND, S.RETRY_WAIT, S.HELD}  # a lane or a resend may send these


def rules(state: RowState, event: RowEvent) -> RowState | None:
    """Where the model says `event` takes a row in `state`; None: it cannot happen."""
    if state is S.DELETED:
        return None
    if event in GOES_OUT:
        return GOES_OUT[event] if state in WAITING_TO_GO else None
    if event in ACK_TO:
        return ACK_TO[event] if state is S.IN_FLIGHT else None
    if event is E.RETRY_DUE:
        return S.RESEND if state is S.RETRY_WAIT else None
    if event is E.COMMITTED:  # the commit deletes acked rows and records held and quarantined
        return S.DELETED if state is S.ACKED else (state if state in (S.HELD, S.QUARANTINED)
                                                   else None)
    if event is E.CONFIRMED:  # what the store holds at rest, or a resend that finds it gone
        return S.DELETED if state in (S.STORED, S.HELD, S.RESEND) else None
    # Overdue: the store saw the row held. It goes again unless it is on its way already,
    # or quarantined by the commit the scan belongs to.
    if state in (S.IN_FLIGHT, S.RESEND, S.QUARANTINED):
        return state
    return S.RESEND if state in (S.HELD, S.RETRY_WAIT) else None


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s.name}-{e.name}" for s, e in PAIRS])
def test_every_pair_is_in_the_table_or_raises(state: RowState, event: RowEvent) -> None:
    expected = rules(state, event)
    if expected is None:
        assert event not in TRANSITIONS[state]
        with pytest.raises(IllegalTransition) as caught:
            transition(state, event)
        assert isinstance(caught.value, ValueError)
        assert (caught.value.state, caught.value.event) == (state, event)
        assert state.name in str(caught.value) and event.name in str(caught.value)
    else:
        assert transition(state, event) is expected is TRANSITIONS[state][event]


def test_the_table_covers_every_state_and_nothing_else() -> None:
    assert list(TRANSITIONS) == list(RowState)
    assert all(isinstance(e, RowEvent) and isinstance(n, RowState)
               for moves in TRANSITIONS.values() for e, n in moves.items())


def test_every_state_is_reachable_from_stored() -> None:
    seen, todo = {S.STORED}, [S.STORED]
    while todo:
        for new in TRANSITIONS[todo.pop()].values():
            if new not in seen:
                seen.add(new)
                todo.append(new)
    assert seen == set(RowState)


def test_deleted_and_quarantined_are_terminal_and_every_other_state_can_end() -> None:
    assert {S.DELETED, S.QUARANTINED} == TERMINAL
    assert TRANSITIONS[S.DELETED] == {}
    assert set(TRANSITIONS[S.QUARANTINED].values()) == {S.QUARANTINED}
    for state in RowState:  # no state traps a row forever
        seen, todo = {state}, [state]
        while todo:
            for new in TRANSITIONS[todo.pop()].values():
                if new not in seen:
                    seen.add(new)
                    todo.append(new)
        assert seen & TERMINAL, state


def test_the_commit_writes_the_settled_states_only() -> None:
    assert {s for s in RowState if E.COMMITTED in TRANSITIONS[s]} == SETTLED
    assert {S.ACKED, S.HELD, S.QUARANTINED} == SETTLED
    assert {transition(s, E.COMMITTED) for s in SETTLED} == {S.DELETED, S.HELD, S.QUARANTINED}


def test_an_acknowledgement_is_taken_only_in_flight() -> None:
    for event in ACK_TO:
        assert [s for s in RowState if event in TRANSITIONS[s]] == [S.IN_FLIGHT]


def test_a_row_at_rest_is_as_the_store_marks_it() -> None:
    assert state_in_store(False) is S.STORED
    assert state_in_store(True) is S.HELD  # acked_at set: waiting for the consumer


def test_the_table_renders_as_markdown_with_one_cell_per_pair() -> None:
    text = describe_table()
    lines = text.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["state", *(e.name for e in RowEvent)]
    body = {cells[0].strip("* "): cells[1:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:2 + len(S)])}
    assert list(body) == [s.name for s in RowState]
    for state, cells in body.items():
        moves = TRANSITIONS[S[state]]
        assert cells == [moves[e].name if e in moves else "·" for e in RowEvent], state
    for meaning in (*STATE_MEANING.values(), *EVENT_MEANING.values()):
        assert meaning in text
    assert set(STATE_MEANING) == set(RowState) and set(EVENT_MEANING) == set(RowEvent)


def test_the_table_draws_as_a_graph_with_one_edge_per_move() -> None:
    dot = describe_dot()
    edges = [line for line in dot.splitlines() if "->" in line]
    assert len(edges) == sum(len(moves) for moves in TRANSITIONS.values())
    assert '  HELD -> RESEND [label="CONFIRMATION_OVERDUE"];' in edges
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")


# -- the ledger ------------------------------------------------------------------
def sent_and(ledger: RowLedger, row_id: int, *events: RowEvent) -> None:
    ledger.move(row_id, E.SEND)
    for event in events:
        ledger.move(row_id, event)


def test_the_ledger_holds_rows_in_hand_and_says_at_rest_for_the_others() -> None:
    ledger = RowLedger()
    assert ledger.state(7) is S.STORED and ledger.state(7, S.HELD) is S.HELD
    assert ledger.move(7, E.SEND, S.HELD) is S.IN_FLIGHT  # a held row found at a restart
    assert ledger.state(7) is S.IN_FLIGHT and len(ledger) == 1
    assert ledger.move(7, E.ACK_HELD) is S.HELD
    assert ledger.counts() == {S.HELD: 1}


def test_an_illegal_move_raises_and_changes_nothing() -> None:
    ledger = RowLedger()
    sent_and(ledger, 1, E.ACK_DELIVERED)
    with pytest.raises(IllegalTransition, match="ACKED cannot take SEND"):
        ledger.move(1, E.SEND)
    with pytest.raises(IllegalTransition, match="STORED cannot take ACK_DELIVERED"):
        ledger.move(2, E.ACK_DELIVERED)  # never sent
    assert ledger.state(1) is S.ACKED and ledger.state(2) is S.STORED
    assert ledger.counts() == {S.ACKED: 1} and len(ledger) == 1


def test_rows_of_a_state_come_oldest_first() -> None:
    ledger = RowLedger()
    for row_id in (5, 3, 9, 1):
        sent_and(ledger, row_id, E.ACK_RETRY)
    assert ledger.ids(S.RETRY_WAIT) == [5, 3, 9, 1]
    assert ledger.ids(S.RETRY_WAIT, 2) == [5, 3]
    ledger.move(3, E.RETRY_DUE)
    ledger.move_all(S.RETRY_WAIT, E.RETRY_DUE)
    assert ledger.ids(S.RESEND) == [3, 5, 9, 1]
    assert ledger.count(S.RESEND) == 4 and ledger.count(S.RETRY_WAIT) == 0


def test_settled_rows_stay_until_a_commit_wrote_them() -> None:
    ledger = RowLedger()
    sent_and(ledger, 1, E.ACK_DELIVERED)
    sent_and(ledger, 2, E.ACK_HELD)
    ledger.move(4, E.TOO_LARGE, note="too_large: payload 9 bytes")
    ledger.move(3, E.SEND)
    ledger.move(3, E.ACK_REJECTED, note="broker rejected: Not authorized")
    sent_and(ledger, 5)
    settled = ledger.settled()
    assert settled == ([1], [(4, "too_large: payload 9 bytes"),
                             (3, "broker rejected: Not authorized")], [2])
    assert ledger.settled() == settled  # taking them moves nothing: a failed commit loses none

    sent_and(ledger, 6, E.ACK_DELIVERED)  # after the commit took its rows
    ledger.committed(*settled)
    assert ledger.counts() == {S.IN_FLIGHT: 1, S.ACKED: 1}
    assert ledger.settled() == ([6], [], [])
    assert ledger.state(2) is S.STORED  # held, and now the store's to know
    assert len(ledger) == 2


def test_a_move_to_where_a_row_is_keeps_its_place_and_note() -> None:
    ledger = RowLedger()
    for row_id in (1, 2):
        ledger.move(row_id, E.SEND)
        ledger.move(row_id, E.ACK_REJECTED, note=f"rejected {row_id}")
    ledger.move(1, E.CONFIRMATION_OVERDUE)  # a scan from before the commit: it stays
    assert ledger.settled()[1] == [(1, "rejected 1"), (2, "rejected 2")]
    assert ledger.move(9, E.CONFIRMATION_OVERDUE, S.QUARANTINED) is S.QUARANTINED
    assert ledger.state(9) is S.STORED  # at rest it was, at rest it stays: not taken in hand


def test_a_commit_leaves_a_row_that_moved_on_since_it_was_taken() -> None:
    ledger = RowLedger()
    sent_and(ledger, 1, E.ACK_HELD)
    settled = ledger.settled()
    ledger.move(1, E.CONFIRMATION_OVERDUE)
    ledger.committed(*settled)
    assert ledger.state(1) is S.RESEND


# -- random lives against the model ------------------------------------------------
ROWS = 4
steps = st.lists(st.one_of(
    st.tuples(st.integers(0, ROWS - 1), st.sampled_from(RowEvent)),
    st.just(None),  # a group commit of everything settled
), max_size=60)


@given(steps)
def test_random_event_sequences_follow_the_model(sequence: list[tuple[int, RowEvent] | None]) -> None:
    ledger = RowLedger()
    state = dict.fromkeys(range(ROWS), S.STORED)  # the whole life, at rest included
    in_hand: dict[int, int] = {}  # row -> the step it reached its state at
    notes: dict[int, str] = {}
    for step, item in enumerate(sequence):
        if item is None:
            acked, quarantined, held = ledger.settled()
            ledger.committed(acked, quarantined, held)
            for row in [*acked, *(r for r, _ in quarantined), *held]:
                state[row] = rules(state[row], E.COMMITTED) or pytest.fail(f"{row} not settled")
                del in_hand[row]
        else:
            row, event = item
            expected = rules(state[row], event)
            before = (ledger.counts(), ledger.settled())
            if expected is None:
                with pytest.raises(IllegalTransition):
                    ledger.move(row, event, state[row])
                assert (ledger.counts(), ledger.settled()) == before
                continue
            note = f"step {step}"
            assert ledger.move(row, event, state[row], note) is expected
            if expected is S.DELETED or event is E.COMMITTED:
                in_hand.pop(row, None)  # gone, or the store's to know
            elif expected is not state[row]:  # (a move to where it is changes nothing)
                in_hand[row] = step
                notes[row] = note
            state[row] = expected
        check_ledger(ledger, state, in_hand, notes)


def check_ledger(ledger: RowLedger, state: dict[int, RowState], in_hand: dict[int, int],
                 notes: dict[int, str]) -> None:
    """The ledger holds exactly the rows in hand, in the order they reached their state."""
    assert len(ledger) == len(in_hand)
    for row, at in state.items():
        assert ledger.state(row, S.DELETED) is (at if row in in_hand else S.DELETED)

    def of(s: RowState) -> list[int]:
        return sorted((r for r in in_hand if state[r] is s), key=in_hand.__getitem__)

    assert ledger.counts() == {s: len(of(s)) for s in RowState if of(s)}
    assert ledger.settled() == (of(S.ACKED), [(r, notes[r]) for r in of(S.QUARANTINED)],
                                of(S.HELD))
    assert all(ledger.ids(s) == of(s) for s in RowState)
