"""What one worker writes in one transaction: a batch taken from its lane's inbox.

- Up to ``batch_max`` messages; the first is waited for, the rest taken while they are there,
  and when the inbox runs dry the batch waits as ``controlsvc.bridge.linger`` says (for an
  accepted command's outcome, else ``fill_linger_s`` for company).
- **A batch that holds a message someone waits for takes no statuses after it.** States (a
  Will: "lost"), acks and agent events come out of the inbox before statuses, but a batch used
  to fill up with statuses behind them, and its transaction, hence the user's wait, grew with
  every status (up to ``batch_max``: a third of a second at 2,000 statuses a second on two
  cores). Those statuses go in the next batch; nothing is reordered, since states, acks and
  events already came first. A batch that began with statuses still takes a state, an ack or
  an event that arrives while it fills, and then stops taking statuses.
- **A batch holding a state message is written as soon as the inbox runs dry**, like one
  holding an ack: it is a connection coming or going (a Will's "lost"), which a user or an
  alert waits for; waiting ``fill_linger_s`` for company would only delay it.
- **A batch holding agent events takes, at its end, the statuses waiting of those events'
  enclosures** (within ``batch_max``), whatever the rule above: an agent sends the status that
  shows what an event did with the event (recording, then no longer), and the batch has those
  enclosures' rows locked anyway. A cancel of a thousand enclosures brings two thousand events
  and a thousand statuses; written after every event, the statuses that end "recording" came a
  quarter of a second after the events that ended the recordings.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from controlsvc.bridge.inbound import Inbound
from controlsvc.bridge.inbox import Inbox
from controlsvc.bridge.linger import OutcomeWait
from schemas.topics import Channel

__all__ = ["ACK_LINGER_S", "next_batch"]

# How long a batch holding an ``accepted`` ack waits for the command's outcome (see linger).
ACK_LINGER_S = 0.002
_STATUS_SUFFIX = f"/{Channel.STATUS.value}"


def next_batch(
    inbox: Inbox,
    *,
    batch_max: int,
    fill_linger_s: float,
    ack_suffix: str,
    state_suffix: str,
    first_timeout: float,
    events_suffix: str | None = None,
    on_first: Callable[[Inbound], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Inbound]:
    """The next batch (see the module doc); empty when nothing came within ``first_timeout``.
    ``on_first`` is told of the first message as soon as it is taken. ``events_suffix``: the
    agent events' topics end so, and the statuses' topics then end in ``/status``."""
    try:
        first = inbox.get(timeout=first_timeout)
    except queue.Empty:
        return []
    if on_first is not None:
        on_first(first)
    fill_until = clock() + fill_linger_s
    batch = [first]
    urgent = not inbox.took_status  # from here on: no statuses
    prompt = first.topic.endswith(state_suffix)  # written once the inbox runs dry
    outcomes = OutcomeWait(ack_suffix)
    outcomes.add(first)
    outcome_until: float | None = None
    while len(batch) < batch_max:
        try:
            inbound = inbox.get_nowait(statuses=not urgent)
        except queue.Empty:
            if outcomes.waiting:
                if outcome_until is None:
                    outcome_until = clock() + ACK_LINGER_S
                until = outcome_until
            elif outcomes.acks or prompt:
                break
            else:
                until = fill_until
            remaining = until - clock()
            if remaining <= 0:
                break
            try:
                # Woken by the message that makes it write (an ack, a state, an event) or by
                # a full batch of statuses, not by each status (``Inbox.get``).
                inbound = inbox.get(
                    timeout=remaining, statuses=not urgent, enough=batch_max - len(batch)
                )
            except queue.Empty:
                break
        urgent = urgent or not inbox.took_status
        prompt = prompt or inbound.topic.endswith(state_suffix)
        batch.append(inbound)
        outcomes.add(inbound)
    if events_suffix is not None:
        batch += _their_statuses(inbox, batch, events_suffix, batch_max - len(batch))
    return batch


def _their_statuses(
    inbox: Inbox, batch: list[Inbound], events_suffix: str, room: int
) -> list[Inbound]:
    """The statuses waiting of the enclosures whose events are in ``batch``."""
    cut = len(events_suffix)
    topics = {m.topic[:-cut] + _STATUS_SUFFIX for m in batch if m.topic.endswith(events_suffix)}
    return inbox.take_statuses(topics, room) if topics and room > 0 else []
