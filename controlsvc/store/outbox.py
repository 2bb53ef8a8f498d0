"""One commit-then-publish: how a decision of the service reaches the broker.

Every message that must reach the broker is first a committed record that says it has not gone
out yet: a ``pending`` command, a ``desired`` version the broker has not acknowledged
(``published_version`` behind ``version``), an alert not yet delivered. Only after the commit is
it published; what the broker acknowledged is then recorded; last, the API processes' event
feeds are told to look (a hint: they read the event log on their own when hints stop).

A process that dies between the commit and the publish (or a broker that is away) leaves the
records saying what did not go out, and the bridge publishes it: ``Housekeeping.republish_pending``
(commands), ``SessionDriver.publish_desired`` (desired documents), ``SessionDriver.deliver_alerts``
(alerts). Nothing is published before its commit, so no agent acts on a decision that was
rolled back.

``commit_then_publish`` is that sequence for the API's decisions (sessions, templates, alerts,
the JABS layer). Two variants keep the rule that no agent acts on an uncommitted decision:
``commands.dispatch`` (the caller commits the ``pending`` command; ``sent`` is recorded after the
PUBACK, in a transaction the agent's answer may race), and ``enclosures.retire``, which clears
the enclosure's retained messages before it commits the retirement, so that an enclosure is
never retired with its old ``desired`` document still on the broker (if the broker cannot take
them, nothing changes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session

from controlsvc.domain.publisher import Publisher
from controlsvc.store import desired, eventlog
from controlsvc.store.db import utcnow

log = logging.getLogger(__name__)

__all__ = ["commit_then_publish"]


def commit_then_publish(
    session: Session,
    publisher: Publisher,
    prefix: str,
    documents: Sequence[desired.Outgoing] = (),
    *,
    notify: bool = True,
    newest_event: int | None = None,
) -> list[desired.Outgoing]:
    """Commit; publish ``documents`` and record those the broker acknowledged; tell the event
    feeds about ``newest_event`` (default: the log's newest). The documents published; the
    others stay unpublished in the database and the bridge publishes them."""
    session.commit()
    published: list[desired.Outgoing] = []
    if documents:
        published = desired.publish_all(publisher, documents)
        if published:
            desired.mark_published(session, published, now=utcnow())
            session.commit()
        if len(published) < len(documents):
            log.warning(
                "%d of %d desired documents stay unpublished (the bridge will publish them)",
                len(documents) - len(published),
                len(documents),
            )
    if notify:
        newest = newest_event if newest_event is not None else eventlog.last_id(session)
        eventlog.notify(publisher, prefix, newest)
    return published
