"""Alerts: an enclosure in an active session (or one expected online) is lost, its camera
stalls, its recording fails, its disk runs low. No Flask, no paho.

``raise_alert`` / ``recover`` only write the database (inside the caller's transaction, with an
``alert`` event for ``GET /api/events``): an open alert per (enclosure, kind) at a time, repeats
of the same condition only counted. ``deliver_pending`` (the bridge's timer) then sends what is
owed, after the commit and at least once:

- a message on ``{prefix}/service/alerts`` (``schemas.messages.Alert``), raised and recovered;
- an email to the users who opted in (``users.alert_recipients``), at most one per
  (enclosure, kind) every ``MAIL_EVERY_S``; the "recovered" mail only follows a mailed alert.

Alerts are a resource every user shares (``GET /api/alerts``): ``acknowledge`` records who saw
one and when, once, with an ``alert.acked`` event so every open UI drops it at once.
``watch_expected_online`` (the bridge's timer) raises ``enclosure_lost`` for an enclosure marked
expected online that is lost or offline, in a session or not, and recovers it when it is back.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from controlsvc.domain import alert_words
from controlsvc.domain.errors import NotFound
from controlsvc.domain.mail import Mail
from controlsvc.domain.publisher import BrokerUnavailable, Publisher
from controlsvc.store import users
from controlsvc.store.db import utcnow
from controlsvc.store.models.enclosures import Enclosure
from controlsvc.store.models.sessions import MESSAGE_LENGTH, Alert
from controlsvc.store.models.users import User
from controlsvc.store.pagination import (
    Page,
    after_key,
    cursor_datetime,
    cursor_int,
    decode_cursor,
    next_cursor,
)
from schemas.codec import dump_message
from schemas.enums import AlertSeverity, EnclosureState
from schemas.logs import log_ids
from schemas.messages import Alert as AlertMessage
from schemas.rest.alerts import AlertOut, AlertStateFilter
from schemas.topics import SERVICE_QOS, Topics

log = logging.getLogger(__name__)

__all__ = [
    "ACKED_EVENT",
    "KIND_SEVERITY",
    "LOST_KIND",
    "MAIL_EVERY_S",
    "clock_skew",
    "acknowledge",
    "alert_out",
    "away_sentence",
    "deliver_pending",
    "get_alert",
    "list_alerts",
    "open_alert",
    "name_session",
    "raise_alert",
    "recover",
    "watch_expected_online",
]

# At most one mail per enclosure and kind this often: a flapping enclosure does not flood
# inboxes (the MQTT and SSE messages still go out each time).
MAIL_EVERY_S = 300.0
# Alerts waiting for delivery are sent this many per round.
DELIVER_BATCH = 200

KIND_SEVERITY: dict[str, AlertSeverity] = {
    "enclosure_lost": AlertSeverity.CRITICAL,
    "camera_stalled": AlertSeverity.WARNING,
    "recording_failed": AlertSeverity.CRITICAL,
    "recording_timed_out": AlertSeverity.CRITICAL,
    "disk_low": AlertSeverity.CRITICAL,
    "clock_skew": AlertSeverity.WARNING,
}

SendMail = Callable[[Mail], None]
LOST_KIND = "enclosure_lost"
ACKED_EVENT = "alert.acked"
# Enclosures looked at per round by ``watch_expected_online``.
WATCH_BATCH = 500
_AWAY = [EnclosureState.LOST.value, EnclosureState.OFFLINE.value]


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LENGTH else text[: MESSAGE_LENGTH - 3] + "..."


def open_alert(session: Session, enclosure_id: str, kind: str) -> Alert | None:
    return session.scalar(
        select(Alert)
        .where(Alert.enclosure_id == enclosure_id, Alert.kind == kind, Alert.recovered_at.is_(None))
        .limit(1)
    )


def away_sentence(enc: Enclosure) -> str:
    """What happened to a lost or offline enclosure, as lab staff say it (no MQTT words)."""
    name = alert_words.who(enc.id, enc.name)
    if enc.state == EnclosureState.LOST.value:
        if enc.lifecycle == "lost":
            return f"{name} lost its connection"
        return f"{name} stopped reporting ({enc.state_reason or 'silent'})"
    if enc.lifecycle is None:
        return f"{name} has never connected"
    return f"{name} was shut down"


def _who(session: Session, eid: str) -> str:
    enc = session.get(Enclosure, eid)
    return alert_words.who(eid, enc.name if enc is not None else None)


def alert_out(alert: Alert) -> AlertOut:
    return AlertOut.model_validate(alert)


def _event(alert: Alert, recovered: bool, events: list[Any], kind: str = "alert") -> None:
    """The alert as ``GET /api/alerts`` shows it, as an event of ``kind``."""
    data: dict[str, Any] = alert_out(alert).model_dump()
    data["recovered"] = recovered
    events.append((kind, data, alert.enclosure_id, None))


def raise_alert(
    session: Session,
    kind: str,
    enclosure_id: str,
    message: str,
    events: list[Any],
    *,
    session_id: str | None = None,
    now: datetime | None = None,
) -> Alert | None:
    """Open an alert (flushed; its ``alert`` event added to ``events``, see
    ``sessions.record_events``); None when one of this kind is already open (counted)."""
    now = now or utcnow()
    existing = open_alert(session, enclosure_id, kind)
    if existing is not None:
        existing.occurrences += 1
        return None
    alert = Alert(
        alert_id=f"{kind}:{enclosure_id}:{secrets.token_hex(4)}",
        kind=kind,
        severity=KIND_SEVERITY.get(kind, AlertSeverity.WARNING).value,
        enclosure_id=enclosure_id,
        session_id=session_id,
        message=_clip(message),
        raised_at=now,
        occurrences=1,
        notify_pending="raised",
        mailed=False,
    )
    session.add(alert)
    session.flush()
    _event(alert, False, events)
    log.warning(
        "alert %s on %s: %s",
        kind,
        enclosure_id,
        message,
        extra=log_ids(enclosure_id=enclosure_id, session_id=session_id),
    )
    return alert


def name_session(alert: Alert, session_id: str, message: str, events: list[Any]) -> bool:
    """An open alert raised outside a session turns out to be about one (an enclosure expected
    online was lost while recording, and the expected-online watch saw it first): it names
    the session from now on, in the database and, through its ``alert`` event, in every UI.
    False when it already names one."""
    if alert.session_id is not None:
        return False
    alert.session_id = session_id
    alert.message = _clip(message)
    _event(alert, False, events)
    return True


def clock_skew(
    session: Session,
    enclosure_id: str,
    before: float | None,
    after: float | None,
    events: list[Any],
    *,
    now: datetime | None = None,
) -> None:
    """An enclosure's status went from ``before`` to ``after`` (its clock offset when skewed,
    else None): raise ``clock_skew`` as the skew begins, recover it as it ends."""
    if after is not None and before is None:
        raise_alert(
            session,
            "clock_skew",
            enclosure_id,
            alert_words.clock_skew(_who(session, enclosure_id), after),
            events,
            now=now,
        )
    elif after is None and before is not None:
        recover(session, "clock_skew", enclosure_id, events, now=now)


def recover(
    session: Session,
    kind: str,
    enclosure_id: str,
    events: list[Any],
    *,
    now: datetime | None = None,
) -> Alert | None:
    """Close the open alert of this kind, if any (its "recovered" message follows)."""
    alert = open_alert(session, enclosure_id, kind)
    if alert is None:
        return None
    alert.recovered_at = now or utcnow()
    alert.notify_pending = "recovered"
    session.flush()
    _event(alert, True, events)
    log.info(
        "alert %s on %s recovered",
        kind,
        enclosure_id,
        extra=log_ids(enclosure_id=enclosure_id, session_id=alert.session_id),
    )
    return alert


def _mailed_recently(session: Session, alert: Alert, now: datetime) -> bool:
    since = now - timedelta(seconds=MAIL_EVERY_S)
    found = session.scalar(
        select(Alert.id)
        .where(
            Alert.enclosure_id == alert.enclosure_id,
            Alert.kind == alert.kind,
            Alert.mailed.is_(True),
            Alert.raised_at >= since,
            Alert.id != alert.id,
        )
        .limit(1)
    )
    return found is not None


def _mail(alert: Alert, recovered: bool, to: str) -> Mail:
    where = f"enclosure {alert.enclosure_id}"
    if alert.session_id:
        where += f" (session {alert.session_id})"
    if recovered:
        subject = f"[jaxmba] recovered: {alert.kind.replace('_', ' ')} on {alert.enclosure_id}"
        text = (
            f"The condition reported at {alert.raised_at:%Y-%m-%d %H:%M:%S} UTC on {where} has "
            f"cleared at {alert.recovered_at or utcnow():%Y-%m-%d %H:%M:%S} UTC.\n\n"
            f"It was: {alert.message}\n"
        )
    else:
        subject = (
            f"[jaxmba] {alert.severity}: {alert.kind.replace('_', ' ')} on {alert.enclosure_id}"
        )
        text = (
            f"{alert.message}\n\nEnclosure: {alert.enclosure_id}\n"
            f"Session: {alert.session_id or '-'}\n"
            f"Since: {alert.raised_at:%Y-%m-%d %H:%M:%S} UTC\n\n"
            "A message follows when it recovers. You receive this because alert emails are on "
            "in your account settings.\n"
        )
    return Mail(to=to, subject=subject, text=text)


def deliver_pending(
    session: Session,
    publisher: Publisher,
    topics: Topics,
    send_mail: SendMail,
    *,
    now: datetime | None = None,
) -> int:
    """Send what pending alerts owe (MQTT, then mail); how many were handled. The caller
    commits. An alert whose MQTT message cannot be published stays pending (retried)."""
    now = now or utcnow()
    pending = list(
        session.scalars(
            select(Alert)
            .where(Alert.notify_pending.is_not(None))
            .order_by(Alert.id)
            .limit(DELIVER_BATCH)
        )
    )
    if not pending:
        return 0
    recipients: list[str] | None = None
    done = 0
    for alert in pending:
        recovered = alert.notify_pending == "recovered"
        message = AlertMessage(
            at=now,
            alert_id=alert.alert_id,
            kind=alert.kind,
            severity=AlertSeverity(alert.severity),
            enclosure_id=alert.enclosure_id,
            session_id=alert.session_id,
            message=alert.message,
            recovered=recovered,
        )
        try:
            publisher.publish(topics.service_alerts(), dump_message(message), qos=SERVICE_QOS)
        except BrokerUnavailable as exc:
            log.warning("alert %s not published yet: %s", alert.alert_id, exc.detail)
            break
        should_mail = alert.mailed if recovered else not _mailed_recently(session, alert, now)
        if should_mail:
            if recipients is None:
                recipients = users.alert_recipients(session)
            for to in recipients:
                send_mail(_mail(alert, recovered, to))
            if not recovered:
                alert.mailed = True
        alert.notify_pending = None
        alert.notified_at = now
        done += 1
    session.flush()
    return done


# -- the resource (the REST API) -----------------------------------------------------------------


def get_alert(session: Session, alert_id: str) -> Alert:
    alert = session.scalar(select(Alert).where(Alert.alert_id == alert_id))
    if alert is None:
        raise NotFound(f"no alert {alert_id!r}", field="alert_id")
    return alert


def list_alerts(
    session: Session,
    *,
    limit: int,
    cursor: str | None = None,
    state: AlertStateFilter | None = None,
    acknowledged: bool | None = None,
    since: datetime | None = None,
    enclosure_id: str | None = None,
    session_id: str | None = None,
) -> Page:
    """Alerts, newest raised first, as ``AlertOut`` items."""
    query = select(Alert)
    if state is AlertStateFilter.OPEN:
        query = query.where(Alert.recovered_at.is_(None))
    elif state is AlertStateFilter.RECOVERED:
        query = query.where(Alert.recovered_at.is_not(None))
    if acknowledged is True:
        query = query.where(Alert.acked_at.is_not(None))
    elif acknowledged is False:
        query = query.where(Alert.acked_at.is_(None))
    if since is not None:
        query = query.where(or_(Alert.recovered_at.is_(None), Alert.recovered_at >= since))
    if enclosure_id is not None:
        query = query.where(Alert.enclosure_id == enclosure_id)
    if session_id is not None:
        query = query.where(Alert.session_id == session_id)
    if cursor is not None:
        key = decode_cursor(cursor, "raised_at", "id")
        at, last_id = cursor_datetime(key["raised_at"]), cursor_int(key["id"])
        query = query.where(after_key(Alert.raised_at, Alert.id, at, last_id))
    query = query.order_by(Alert.raised_at.desc(), Alert.id.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    after = next_cursor(rows, limit, lambda a: {"raised_at": a.raised_at, "id": a.id})
    return Page([alert_out(a) for a in rows[:limit]], after)


def acknowledge(
    session: Session, alert_id: str, user: User, events: list[Any], *, now: datetime | None = None
) -> Alert:
    """Record that ``user`` has seen the alert (flushed; an ``alert.acked`` event added).
    Idempotent: the first acknowledgement stays, a repeat changes nothing."""
    alert = session.scalar(select(Alert).where(Alert.alert_id == alert_id).with_for_update())
    if alert is None:
        raise NotFound(f"no alert {alert_id!r}", field="alert_id")
    if alert.acked_at is not None:
        return alert
    alert.acked_at = now or utcnow()
    alert.acked_by_id = user.id
    alert.acked_by = user.email
    session.flush()
    _event(alert, alert.recovered_at is not None, events, ACKED_EVENT)
    log.info("alert %s acknowledged by %s", alert.alert_id, user.email)
    return alert


# -- enclosures expected online (the bridge's timer) ---------------------------------------------


def watch_expected_online(
    session: Session, events: list[Any], *, now: datetime | None = None
) -> int:
    """Raise ``enclosure_lost`` for each enclosure expected online that is lost or offline and
    has none open (in a session or not); recover an open one once the enclosure is back (or,
    raised outside sessions, once it is no longer expected online or retired). How many
    alerts were raised or recovered."""
    now = now or utcnow()
    changed = 0
    open_lost = select(Alert.enclosure_id).where(
        Alert.kind == LOST_KIND, Alert.recovered_at.is_(None)
    )
    away = session.scalars(
        select(Enclosure)
        .where(
            Enclosure.expected_online.is_(True),
            Enclosure.retired_at.is_(None),
            Enclosure.state.in_(_AWAY),
            Enclosure.id.not_in(open_lost.where(Alert.enclosure_id.is_not(None))),
        )
        .order_by(Enclosure.id)
        .limit(WATCH_BATCH)
        # Another bridge (or the writer) holding one: it is looked at next round.
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    for enc in away:
        message = f"{away_sentence(enc)}; it is expected online"
        if raise_alert(session, LOST_KIND, enc.id, message, events, now=now) is not None:
            changed += 1
    back = session.scalars(
        select(Alert)
        .join(Enclosure, Enclosure.id == Alert.enclosure_id)
        .where(
            Alert.kind == LOST_KIND,
            Alert.recovered_at.is_(None),
            or_(
                Enclosure.state.not_in(_AWAY),
                and_(
                    Alert.session_id.is_(None),
                    or_(Enclosure.expected_online.is_(False), Enclosure.retired_at.is_not(None)),
                ),
            ),
        )
        .order_by(Alert.id)
        .limit(WATCH_BATCH)
    ).all()
    for alert in back:
        if alert.enclosure_id is not None and recover(
            session, LOST_KIND, alert.enclosure_id, events, now=now
        ):
            changed += 1
    return changed
