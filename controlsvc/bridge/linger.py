"""How long a batch being collected may wait for more messages once the queue runs dry.

- A batch holding an ack waits for nothing more: someone is waiting for that command. Except
  for an ``accepted`` whose outcome has not arrived yet: an agent often sends ``succeeded`` (or
  ``failed``) a millisecond later, and written in one transaction the command settles a whole
  transaction sooner than in two in a row. Once every accepted command in the batch has its
  outcome there is nothing to wait for.
- So does a batch holding a state message (``controlsvc.bridge.batching``): a connection
  coming or going, which a user or an alert waits for.
- Any other batch (statuses, agent events) waits a little for company: one transaction
  per message or two costs several times the CPU per message of one per few dozen, and a status
  a few milliseconds later is not staler in any way that matters.

Only the two fields needed are read here, with a fast JSON parse; the schema check proper comes
later in ``Writer.parse``, so a malformed ack at worst costs a short wait.
"""

from __future__ import annotations

from pydantic_core import from_json

from controlsvc.bridge.inbound import Inbound
from schemas.enums import AckResult

__all__ = ["OutcomeWait"]

_ACCEPTED = AckResult.ACCEPTED.value


class OutcomeWait:
    """Follows the acks added to one batch; ``waiting`` while an accepted command lacks its
    outcome."""

    def __init__(self, ack_suffix: str) -> None:
        self._suffix = ack_suffix
        self._accepted: set[object] = set()
        self._settled: set[object] = set()
        self.acks = 0

    def add(self, inbound: Inbound) -> None:
        if not inbound.topic.endswith(self._suffix):
            return
        self.acks += 1
        try:
            body = from_json(inbound.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        command_id = body.get("command_id")
        if not isinstance(command_id, str):
            return
        if body.get("result") == _ACCEPTED:
            self._accepted.add(command_id)
        else:
            self._settled.add(command_id)

    @property
    def waiting(self) -> bool:
        return not self._accepted <= self._settled
