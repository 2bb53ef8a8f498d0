"""The state machine of a command (``CommandState``): plain, typed, no I/O.

::

    pending ──published (PUBACK)──▶ sent ──ack accepted──▶ accepted ──ack succeeded──▶ succeeded
       │                             │                        ├──────ack failed────────▶ failed
       │                             │                        │
       ├─────────────────────────────┴─ ack rejected | succeeded | failed | expired ──▶ (that state)
       └─────────────────────────────┴────── deadline (+ grace) passed ───┴────────────▶ timed_out

An answer may beat the API's mark of ``sent`` (the agent is fast, the API's UPDATE waits), so
every ack moves ``pending`` as it moves ``sent``. ``accepted`` only ever follows an unsettled
command not yet accepted: a second ``accepted`` is a duplicate. Terminal states (``rejected``,
``succeeded``, ``failed``, ``expired``, ``timed_out``) never change; an input there is late.

Each signal has one target state, whatever the state it comes from, so every change is one
conditional UPDATE: ``SET state = target(signal) WHERE state IN sources(signal)``
(``controlsvc.store.commands``). The race between the API's mark of ``sent``, the bridge's ack and
the bridge's timer is then decided by the database, and no terminal state is overwritten.
"""

from __future__ import annotations

from enum import StrEnum

from schemas.enums import AckResult, CommandState

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "UNSETTLED_STATES",
    "CommandState",
    "Signal",
    "ack_signal",
    "ignored_reason",
    "next_state",
    "sources",
    "target",
    "timeout_detail",
]


class Signal(StrEnum):
    """What can happen to a command."""

    PUBLISHED = "published"  # the broker took the cmd message (PUBACK)
    ACK_ACCEPTED = "ack_accepted"  # the agent started a long command; its outcome follows
    ACK_REJECTED = "ack_rejected"
    ACK_SUCCEEDED = "ack_succeeded"
    ACK_FAILED = "ack_failed"
    ACK_EXPIRED = "ack_expired"  # the agent got it after its expires_at
    DEADLINE = "deadline"  # no final answer by deadline_at (+ grace): the bridge's timer


_ACK_SIGNALS: dict[AckResult, Signal] = {
    AckResult.ACCEPTED: Signal.ACK_ACCEPTED,
    AckResult.REJECTED: Signal.ACK_REJECTED,
    AckResult.SUCCEEDED: Signal.ACK_SUCCEEDED,
    AckResult.FAILED: Signal.ACK_FAILED,
    AckResult.EXPIRED: Signal.ACK_EXPIRED,
}

_P, _S, _A = CommandState.PENDING, CommandState.SENT, CommandState.ACCEPTED

# signal -> (target state, the states it moves to the target). Absent pairs change nothing.
_TABLE: dict[Signal, tuple[CommandState, frozenset[CommandState]]] = {
    Signal.PUBLISHED: (CommandState.SENT, frozenset({_P})),
    Signal.ACK_ACCEPTED: (CommandState.ACCEPTED, frozenset({_P, _S})),
    Signal.ACK_REJECTED: (CommandState.REJECTED, frozenset({_P, _S, _A})),
    Signal.ACK_SUCCEEDED: (CommandState.SUCCEEDED, frozenset({_P, _S, _A})),
    Signal.ACK_FAILED: (CommandState.FAILED, frozenset({_P, _S, _A})),
    Signal.ACK_EXPIRED: (CommandState.EXPIRED, frozenset({_P, _S, _A})),
    Signal.DEADLINE: (CommandState.TIMED_OUT, frozenset({_P, _S, _A})),
}

TRANSITIONS: dict[tuple[CommandState, Signal], CommandState] = {
    (state, signal): new for signal, (new, froms) in _TABLE.items() for state in froms
}
"""Every ``(state, signal)`` that changes a command, and the state it changes it to."""

UNSETTLED_STATES: tuple[CommandState, ...] = tuple(
    s for s in CommandState if any(state is s for state, _ in TRANSITIONS)
)
"""States some signal still changes, in ``CommandState`` order."""
TERMINAL_STATES = frozenset(CommandState) - frozenset(UNSETTLED_STATES)


def ack_signal(result: AckResult) -> Signal:
    """The signal of an ack with ``result``."""
    return _ACK_SIGNALS[result]


def target(signal: Signal) -> CommandState:
    """The state ``signal`` moves a command to (from any of ``sources(signal)``)."""
    return _TABLE[signal][0]


def sources(signal: Signal) -> tuple[CommandState, ...]:
    """The states ``signal`` changes, in ``CommandState`` order (for ``WHERE state IN``)."""
    froms = _TABLE[signal][1]
    return tuple(s for s in CommandState if s in froms)


def next_state(state: CommandState, signal: Signal) -> CommandState | None:
    """The state ``signal`` moves ``state`` to; None when it changes nothing."""
    return TRANSITIONS.get((state, signal))


def ignored_reason(state: CommandState, signal: Signal) -> str | None:
    """Why ``signal`` changes nothing in ``state``: ``late`` (the command is settled) or
    ``duplicate`` (unsettled, but already at or past where the signal leads, e.g. a second
    ``accepted``); None when it changes the state."""
    if next_state(state, signal) is not None:
        return None
    return "late" if state in TERMINAL_STATES else "duplicate"


def timeout_detail(state: CommandState, timeout_s: float) -> str:
    """The ``detail`` of a command that timed out in ``state`` after ``timeout_s``."""
    if state is CommandState.PENDING:
        return f"never reached the broker within {timeout_s:g} s"
    if state is CommandState.ACCEPTED:
        return f"accepted, but no outcome within {timeout_s:g} s"
    return f"no answer from the enclosure within {timeout_s:g} s"
