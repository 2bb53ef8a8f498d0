"""What a broker's refusal of a connection means: the MQTT 5 CONNACK reason codes (spec 3.2.2.2).

One table for the agent and every connection of the service, so that they agree on which
refusals reconnecting cannot fix (``fatal``: wrong credentials, a client id the account may not
use, a ban) and stop hammering the broker until someone changes the configuration, and which
are worth retrying (a broker busy, restarting or moved).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONNACK_MEANINGS", "FATAL_CONNACK", "Refusal", "refusal"]

CONNACK_MEANINGS: dict[int, str] = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
    0x90: "topic name invalid",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9F: "connection rate exceeded",
}

# Retrying cannot fix these until someone changes the configuration or the broker's accounts.
FATAL_CONNACK = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A CONNACK that refused the connection."""

    code: int
    meaning: str
    fatal: bool

    def __str__(self) -> str:
        return f"{self.meaning} (0x{self.code:02x})"


def refusal(code: int) -> Refusal | None:
    """The refusal a CONNACK reason code stands for; None for success (below 0x80)."""
    if code < 0x80:
        return None
    meaning = CONNACK_MEANINGS.get(code, "refused")
    return Refusal(code, meaning, code in FATAL_CONNACK)
