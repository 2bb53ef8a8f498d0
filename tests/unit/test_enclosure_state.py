"""Derived enclosure state, staleness rules and liveness arithmetic (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controlsvc.domain.enclosure_state import (
    FUTURE_TOLERANCE_S,
    SEQ_BACKLOG,
    Liveness,
    Verdict,
    bounded_at,
    clock_skew,
    derive_state,
    judge_lifecycle,
    judge_status,
    status_cause,
    status_fault,
    status_signature,
    superseded_wills,
)
from schemas.enums import EnclosureState, Lifecycle

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def status(**overrides):
    base = {
        "camera": {"source": "testpattern", "connected": True, "recording": False, "error": None},
        "recording": None,
        "last_error": None,
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("lifecycle", "latest", "expected"),
    [
        (None, None, EnclosureState.OFFLINE),
        (Lifecycle.DISCONNECTED, status(), EnclosureState.OFFLINE),
        (Lifecycle.LOST, status(), EnclosureState.LOST),
        (Lifecycle.INIT, None, EnclosureState.IDLE),
        (Lifecycle.READY, None, EnclosureState.IDLE),
        (Lifecycle.READY, status(), EnclosureState.IDLE),
        (
            Lifecycle.READY,
            status(recording={"session_id": "s1", "file": "a.mp4"}),
            EnclosureState.RECORDING,
        ),
        (
            Lifecycle.READY,
            status(camera={"source": "x", "connected": True, "recording": True}),
            EnclosureState.RECORDING,
        ),
        (Lifecycle.READY, status(last_error="disk full"), EnclosureState.ERROR),
        (
            Lifecycle.READY,
            status(camera={"source": "x", "connected": False, "recording": False}),
            EnclosureState.ERROR,
        ),
        (
            Lifecycle.READY,
            status(
                camera={"source": "x", "connected": True, "recording": True, "error": "stalled"},
                recording={"session_id": "s1"},
            ),
            EnclosureState.ERROR,
        ),
        ("lost", None, EnclosureState.LOST),
    ],
)
def test_derive_state(lifecycle, latest, expected):
    state, reason = derive_state(lifecycle, latest)
    assert state is expected
    assert reason


def test_reasons_say_why():
    assert derive_state(None, None)[1] == "never seen"
    assert derive_state(Lifecycle.DISCONNECTED, None)[1] == "clean shutdown"
    assert derive_state(Lifecycle.LOST, None)[1] == "connection lost"  # no MQTT words for people
    assert derive_state(Lifecycle.READY, status(last_error="disk full"))[1] == "disk full"
    assert "s1" in derive_state(Lifecycle.READY, status(recording={"session_id": "s1"}))[1]
    long_error = "x" * 500
    assert len(derive_state(Lifecycle.READY, status(last_error=long_error))[1]) == 200


def test_status_fault():
    assert status_fault(None) is None
    assert status_fault(status()) is None
    assert status_fault(status(last_error="boom")) == "boom"
    assert status_fault(status(camera={"connected": True, "error": "no frames"})) == (
        "camera: no frames"
    )


def test_status_signature_ignores_counters():
    a = status(camera={"source": "x", "connected": True, "recording": False, "measured_fps": 30})
    b = status(camera={"source": "x", "connected": True, "recording": False, "measured_fps": 29})
    assert status_signature("idle", a) == status_signature("idle", b)
    c = status(camera={"source": "x", "connected": False, "recording": False})
    assert status_signature("idle", a) != status_signature("error", c)


@pytest.mark.parametrize(
    ("stored", "incoming", "expected"),
    [
        ((None, None, None), ("b1", 0, T0), Verdict.NEW),
        (("b1", 5, T0), ("b1", 6, T0), Verdict.NEW),
        (("b1", 5, T0), ("b1", 5, T0), Verdict.DUPLICATE),
        (("b1", 5, T0), ("b1", 4, T0 + timedelta(seconds=9)), Verdict.STALE),
        # a huge seq stored (corrupted or forged) does not make the boot's next ones stale...
        (("b1", 2**62, T0), ("b1", 6, T0 + timedelta(seconds=1)), Verdict.NEW),
        # ...though an older one still is, and so is one within the backlog a broker may replay
        (("b1", 2**62, T0), ("b1", 6, T0 - timedelta(seconds=1)), Verdict.STALE),
        (("b1", 5 + SEQ_BACKLOG, T0), ("b1", 5, T0 + timedelta(seconds=9)), Verdict.STALE),
        # a new boot wins when its message is newer...
        (("b1", 500, T0), ("b2", 0, T0 + timedelta(seconds=1)), Verdict.NEW),
        # ...and a late message of an old boot does not
        (("b2", 0, T0), ("b1", 501, T0 - timedelta(seconds=1)), Verdict.STALE),
        (("b2", 0, T0), ("b1", 501, T0), Verdict.STALE),
    ],
)
def test_judge_status(stored, incoming, expected):
    assert judge_status(*stored, *incoming) is expected


def test_judge_lifecycle():
    # First message
    assert judge_lifecycle(None, None, None, "b1", "init", T0) is Verdict.NEW
    # Same message again (retained replay, QoS 1 redelivery)
    assert judge_lifecycle("b1", "ready", T0, "b1", "ready", T0) is Verdict.DUPLICATE
    # The Will of the same boot carries the connect time (older than 'ready'): still applies
    assert (
        judge_lifecycle("b1", "ready", T0, "b1", "lost", T0 - timedelta(seconds=5)) is Verdict.NEW
    )
    # Reconnect within a boot: ready again after lost
    assert judge_lifecycle("b1", "lost", T0, "b1", "ready", T0) is Verdict.NEW
    # The previous boot's late Will after the new boot said init: stale
    assert (
        judge_lifecycle("b2", "init", T0, "b1", "lost", T0 - timedelta(seconds=60)) is Verdict.STALE
    )
    # A new boot is newer
    assert judge_lifecycle("b1", "lost", T0, "b2", "init", T0 + timedelta(seconds=1)) is Verdict.NEW


def test_liveness_limit():
    liveness = Liveness(status_interval_s=5.0, lost_after_intervals=3.0)
    assert liveness.silence_limit() == timedelta(seconds=15)
    assert liveness.silence_limit(2.0) == timedelta(seconds=6)


def test_clock_skew_and_the_cause_a_status_gives() -> None:
    assert clock_skew(None) is None
    assert clock_skew(status()) is None
    assert clock_skew(status(clock={"offset_s": 0.3, "skewed": False})) is None
    assert clock_skew(status(clock={"offset_s": None, "skewed": True})) is None
    skewed = status(clock={"offset_s": 600.04, "skewed": True})
    assert clock_skew(skewed) == 600.04
    assert status_cause(skewed) == "the enclosure's clock is +600.0 s off the service's"
    # the agent's own words come first
    both = status(clock={"offset_s": -30.0, "skewed": True}, last_error="disk full")
    assert status_cause(both) == "the enclosure reports: disk full"
    assert status_cause(status()) is None


def test_bounded_at_corrects_skew_and_caps_the_future() -> None:
    received = T0 + timedelta(seconds=0.2)
    assert bounded_at(T0, received, None) == T0
    # an enclosure 10 minutes ahead that knows it: its times in the service's clock
    assert bounded_at(T0 + timedelta(minutes=10), received, 600.0) == T0
    # from the future: counts as sent when it arrived (plus the tolerance)
    cap = received + timedelta(seconds=FUTURE_TOLERANCE_S)
    assert bounded_at(datetime(2099, 1, 1, tzinfo=UTC), received, None) == cap
    assert bounded_at(T0, received, -1e6) == cap
    # offsets that cannot be true are not used
    for absurd in (float("nan"), float("inf"), 1e15):
        assert bounded_at(T0, received, absurd) == T0


def test_a_will_of_an_older_connection_is_stale():
    earlier = T0 - timedelta(seconds=5)
    kw = {"stored_connection": 2}
    assert judge_lifecycle("b1", "ready", T0, "b1", "lost", earlier, connection=1, **kw) is (
        Verdict.STALE
    )
    # the Will of the current connection, and messages that do not say: news
    assert judge_lifecycle("b1", "ready", T0, "b1", "lost", earlier, connection=2, **kw) is (
        Verdict.NEW
    )
    assert judge_lifecycle("b1", "ready", T0, "b1", "lost", earlier, **kw) is Verdict.NEW
    assert judge_lifecycle("b1", "lost", T0, "b1", "ready", T0, connection=3, **kw) is Verdict.NEW


def test_superseded_wills():
    lost, init, ready = Lifecycle.LOST, Lifecycle.INIT, Lifecycle.READY
    # replayed Will, then the next connection: superseded
    assert superseded_wills([("a", lost, "b1", 1), ("a", init, "b1", 2)]) == {0}
    # another enclosure's or a later Will of the same connection: not
    assert superseded_wills([("a", lost, "b1", 1), ("b", init, "b1", 2)]) == set()
    assert superseded_wills([("a", init, "b1", 2), ("a", lost, "b1", 2)]) == set()
    # a Will followed by a message of its own connection (delivered out of order): kept
    assert superseded_wills([("a", lost, "b1", 2), ("a", ready, "b1", 2)]) == set()
    # a new boot, or agents that do not number their connections
    assert superseded_wills([("a", lost, "b1", 4), ("a", init, "b2", 1)]) == {0}
    assert superseded_wills([("a", lost, "b1", None), ("a", init, "b1", None)]) == {0}
