"""Every (state, signal, ended) of the enclosure machine, and the session derivation."""

from __future__ import annotations

import itertools

import pytest

from controlsvc.domain.session_state import (
    ACTIVE_ENCLOSURE_STATES,
    EncState,
    Signal,
    Transition,
    derive_session,
    next_state,
)
from schemas.enums import SessionStatus

P, S, R = EncState.PENDING, EncState.STARTING, EncState.RECORDING
C, F, X, T = EncState.COMPLETED, EncState.FAILED, EncState.CANCELED, EncState.TIMED_OUT

# (state, signal) -> (next state before the end, next state after the end); None: no change.
EXPECTED: dict[tuple[EncState, Signal], tuple[EncState | None, EncState | None]] = {
    (P, Signal.START_TIME): (S, S),
    (P, Signal.FRAMES): (R, R),
    (P, Signal.STOPPED): (F, C),
    (P, Signal.FAILED): (F, F),
    (P, Signal.START_TIMEOUT): (None, None),
    (P, Signal.LOST_TIMEOUT): (T, T),
    (P, Signal.END_TIMEOUT): (T, T),
    (P, Signal.CANCEL): (X, X),
    (S, Signal.START_TIME): (None, None),
    (S, Signal.FRAMES): (R, R),
    (S, Signal.STOPPED): (F, C),
    (S, Signal.FAILED): (F, F),
    (S, Signal.START_TIMEOUT): (T, T),
    (S, Signal.LOST_TIMEOUT): (T, T),
    (S, Signal.END_TIMEOUT): (T, T),
    (S, Signal.CANCEL): (X, X),
    (R, Signal.START_TIME): (None, None),
    (R, Signal.FRAMES): (None, None),
    (R, Signal.STOPPED): (F, C),
    (R, Signal.FAILED): (F, F),
    (R, Signal.START_TIMEOUT): (None, None),
    (R, Signal.LOST_TIMEOUT): (T, T),
    (R, Signal.END_TIMEOUT): (T, T),
    (R, Signal.CANCEL): (X, X),
    (T, Signal.FRAMES): (R, None),
    (T, Signal.FAILED): (F, F),
}
for terminal in (C, F, X, T):
    for signal in Signal:
        EXPECTED.setdefault((terminal, signal), (None, None))


def test_the_table_covers_every_pair() -> None:
    assert set(EXPECTED) == set(itertools.product(EncState, Signal))


@pytest.mark.parametrize(
    ("state", "signal", "ended"),
    list(itertools.product(EncState, Signal, (False, True))),
    ids=lambda v: str(getattr(v, "value", v)),
)
def test_transition(state: EncState, signal: Signal, ended: bool) -> None:
    expected = EXPECTED[(state, signal)][1 if ended else 0]
    result = next_state(state, signal, ended=ended, reason="why")
    if expected is None:
        assert result is None
    else:
        assert isinstance(result, Transition)
        assert result.state is expected


def test_terminal_states_only_leave_for_recording_or_failure_from_timed_out() -> None:
    for state in (C, F, X):
        for signal in Signal:
            for ended in (False, True):
                assert next_state(state, signal, ended=ended) is None


def test_messages_carry_the_reason() -> None:
    failed = next_state(R, Signal.FAILED, ended=False, reason="disk below reserve")
    assert failed == Transition(F, "disk below reserve")
    early = next_state(R, Signal.STOPPED, ended=False, reason="stop_recording command")
    assert early is not None
    assert "stop_recording command" in (early.message or "")
    assert next_state(R, Signal.STOPPED, ended=True) == Transition(C, None)
    assert next_state(S, Signal.START_TIMEOUT, ended=False) == Transition(
        T, "no confirmation within the timeout"
    )
    back = next_state(T, Signal.FRAMES, ended=False)
    assert back is not None
    assert back.message == "recording again after timing out"


def test_active_states() -> None:
    assert {s for s in EncState if not s.is_terminal} == ACTIVE_ENCLOSURE_STATES


# -- the session ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "started", "ended", "canceled", "expected"),
    [
        ([P, P], False, False, False, SessionStatus.SCHEDULED),
        ([S, P], True, False, False, SessionStatus.RUNNING),
        ([R, R], True, False, False, SessionStatus.RUNNING),
        ([R, C], True, True, False, SessionStatus.RUNNING),
        ([C, C], True, True, False, SessionStatus.COMPLETED),
        ([C, X], True, True, False, SessionStatus.COMPLETED),
        ([C, F], True, True, False, SessionStatus.COMPLETED_WITH_FAILURES),
        ([C, T], True, True, False, SessionStatus.COMPLETED_WITH_FAILURES),
        ([C, T], True, False, False, SessionStatus.RUNNING),  # T may still come back
        ([F, F], True, False, False, SessionStatus.COMPLETED_WITH_FAILURES),
        ([X, X], True, False, False, SessionStatus.CANCELED),
        ([X, F], True, False, False, SessionStatus.COMPLETED_WITH_FAILURES),
        ([R, R], True, False, True, SessionStatus.CANCELED),
        ([P], False, False, True, SessionStatus.CANCELED),
        ([], True, False, False, SessionStatus.RUNNING),
    ],
)
def test_derive_session(
    states: list[EncState],
    started: bool,
    ended: bool,
    canceled: bool,
    expected: SessionStatus,
) -> None:
    current = SessionStatus.RUNNING if started else SessionStatus.SCHEDULED
    result = derive_session(current, states, started=started, ended=ended, canceled=canceled)
    assert result is expected


@pytest.mark.parametrize(
    "terminal",
    [SessionStatus.COMPLETED, SessionStatus.COMPLETED_WITH_FAILURES, SessionStatus.CANCELED],
)
def test_a_settled_session_never_changes(terminal: SessionStatus) -> None:
    for states in ([R], [F], [X], []):
        for flags in itertools.product((False, True), repeat=3):
            started, ended, canceled = flags
            assert (
                derive_session(terminal, states, started=started, ended=ended, canceled=canceled)
                is terminal
            )
