"""Every (state, signal) of the command machine, and what the SQL lists derive from it."""

from __future__ import annotations

import itertools

import pytest

from controlsvc.domain.command_state import (
    TERMINAL_STATES,
    TRANSITIONS,
    UNSETTLED_STATES,
    CommandState,
    Signal,
    ack_signal,
    ignored_reason,
    next_state,
    sources,
    target,
    timeout_detail,
)
from schemas.enums import AckResult

P, S, A = CommandState.PENDING, CommandState.SENT, CommandState.ACCEPTED
R, OK, F = CommandState.REJECTED, CommandState.SUCCEEDED, CommandState.FAILED
E, T = CommandState.EXPIRED, CommandState.TIMED_OUT

# (state, signal) -> next state; None: no change. Written out by hand, not derived.
EXPECTED: dict[tuple[CommandState, Signal], CommandState | None] = {
    (P, Signal.PUBLISHED): S,
    (P, Signal.ACK_ACCEPTED): A,  # the answer beat the API's mark of sent
    (P, Signal.ACK_REJECTED): R,
    (P, Signal.ACK_SUCCEEDED): OK,
    (P, Signal.ACK_FAILED): F,
    (P, Signal.ACK_EXPIRED): E,
    (P, Signal.DEADLINE): T,
    (S, Signal.PUBLISHED): None,  # a re-publish counts, the state stays
    (S, Signal.ACK_ACCEPTED): A,
    (S, Signal.ACK_REJECTED): R,
    (S, Signal.ACK_SUCCEEDED): OK,
    (S, Signal.ACK_FAILED): F,
    (S, Signal.ACK_EXPIRED): E,
    (S, Signal.DEADLINE): T,
    (A, Signal.PUBLISHED): None,
    (A, Signal.ACK_ACCEPTED): None,  # a duplicate
    (A, Signal.ACK_REJECTED): R,
    (A, Signal.ACK_SUCCEEDED): OK,
    (A, Signal.ACK_FAILED): F,
    (A, Signal.ACK_EXPIRED): E,
    (A, Signal.DEADLINE): T,
}
for terminal in (R, OK, F, E, T):
    for signal in Signal:
        EXPECTED[(terminal, signal)] = None


def test_the_expectations_cover_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(CommandState, Signal))


@pytest.mark.parametrize(
    ("state", "signal"), list(itertools.product(CommandState, Signal)), ids=lambda v: v.value
)
def test_next_state(state: CommandState, signal: Signal) -> None:
    assert next_state(state, signal) is EXPECTED[(state, signal)]


def test_transitions_lists_exactly_the_changes() -> None:
    assert {k: v for k, v in EXPECTED.items() if v is not None} == TRANSITIONS


@pytest.mark.parametrize("signal", list(Signal), ids=lambda s: s.value)
def test_each_signal_has_one_target_and_its_sources_are_what_it_changes(signal: Signal) -> None:
    # What lets one conditional UPDATE (SET target WHERE state IN sources) apply a signal.
    changed = [state for state in CommandState if EXPECTED[(state, signal)] is not None]
    assert list(sources(signal)) == changed
    assert {EXPECTED[(state, signal)] for state in changed} == {target(signal)}


def test_sql_lists_of_the_three_updates() -> None:
    assert sources(Signal.PUBLISHED) == (P,)  # mark_sent, republishable
    assert sources(Signal.ACK_ACCEPTED) == (P, S)  # apply_ack of accepted
    for signal in (Signal.ACK_REJECTED, Signal.ACK_SUCCEEDED, Signal.ACK_FAILED):
        assert sources(signal) == (P, S, A)  # apply_ack of an outcome
    assert sources(Signal.DEADLINE) == (P, S, A)  # time_out_overdue


def test_terminal_states_agree_with_the_wire_contract() -> None:
    assert {s for s in CommandState if s.is_terminal} == TERMINAL_STATES
    assert UNSETTLED_STATES == (P, S, A)
    assert TERMINAL_STATES.isdisjoint(UNSETTLED_STATES)
    assert TERMINAL_STATES | set(UNSETTLED_STATES) == set(CommandState)


@pytest.mark.parametrize("result", list(AckResult), ids=lambda r: r.value)
def test_an_ack_leads_to_the_state_of_its_result(result: AckResult) -> None:
    assert target(ack_signal(result)) is result.command_state


@pytest.mark.parametrize(
    ("state", "signal"), list(itertools.product(CommandState, Signal)), ids=lambda v: v.value
)
def test_ignored_reason(state: CommandState, signal: Signal) -> None:
    reason = ignored_reason(state, signal)
    if EXPECTED[(state, signal)] is not None:
        assert reason is None
    elif state.is_terminal:
        assert reason == "late"
    else:
        assert reason == "duplicate"


def test_timeout_detail_says_how_far_the_command_got() -> None:
    assert timeout_detail(P, 30.0) == "never reached the broker within 30 s"
    assert timeout_detail(S, 2.5) == "no answer from the enclosure within 2.5 s"
    assert timeout_detail(A, 600.0) == "accepted, but no outcome within 600 s"
