"""The CONNACK refusal table the agent and the service share."""

from __future__ import annotations

import pytest

from schemas.connack import CONNACK_MEANINGS, FATAL_CONNACK, refusal


@pytest.mark.parametrize("code", [0x00, 0x01, 0x02, 0x7F])
def test_success_is_no_refusal(code: int) -> None:
    assert refusal(code) is None


@pytest.mark.parametrize("code", sorted(FATAL_CONNACK))
def test_what_retrying_cannot_fix_is_fatal_and_named(code: int) -> None:
    refused = refusal(code)
    assert refused is not None
    assert refused.fatal
    assert str(refused) == f"{CONNACK_MEANINGS[code]} (0x{code:02x})"


@pytest.mark.parametrize(
    ("code", "meaning"),
    [(0x88, "server unavailable"), (0x89, "server busy"), (0x9F, "connection rate exceeded")],
)
def test_a_busy_or_moving_broker_is_retried(code: int, meaning: str) -> None:
    refused = refusal(code)
    assert refused is not None
    assert not refused.fatal
    assert refused.meaning == meaning


def test_an_unknown_failure_code_is_retried() -> None:
    refused = refusal(0xFE)
    assert refused is not None
    assert (refused.meaning, refused.fatal) == ("refused", False)


def test_banned_and_bad_credentials_are_fatal_for_everyone() -> None:
    """The agent once retried a ban (0x8a) that the service gave up on."""
    assert {0x85, 0x86, 0x87, 0x8A} <= FATAL_CONNACK
