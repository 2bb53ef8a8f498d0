"""Alerts: an enclosure in an active session is lost, its camera stalls, its recording fails, its
disk runs low. No Flask, no paho.

``raise_alert`` / ``recover`` only write the database (inside the caller's transaction, with an
``alert`` event for ``GET /api/events``): an open alert per (enclosure, kind) at a time, repeats
of the same condition only counted. ``deliver_pending`` (the bridge's timer) then sends what is
owed, after the commit and at least once:

- a message on ``{prefix}/service/alerts`` (``schemas.messages.Alert``), raised and recovered;
- an email to the users who opted in (``users.alert_recipients``), at most one per
  (enclosure, kind) every ``MAIL_EVERY_S``; the "recovered" mail only follows a mailed alert.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlsvc import users
from controlsvc.db import utcnow
from controlsvc.mail import Mail
from controlsvc.models.sessions import MESSAGE_LENGTH, Alert
from controlsvc.publisher import BrokerUnavailable, Publisher
from schemas.codec import dump_message
from schemas.enums import AlertSeverity
from schemas.messages import Alert as AlertMessage
from schemas.topics import SERVICE_QOS, Topics

log = logging.getLogger(__name__)

__all__ = [
    "KIND_SEVERITY",
    "MAIL_EVERY_S",
    "clock_skew",
    "deliver_pending",
    "open_alert",
    "raise_alert",
    "recover",
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


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LENGTH else text[: MESSAGE_LENGTH - 3] + "..."


def open_alert(session: Session, enclosure_id: str, kind: str) -> Alert | None:
    return session.scalar(
        select(Alert)
        .where(Alert.enclosure_id == enclosure_id, Alert.kind == kind, Alert.recovered_at.is_(None))
        .limit(1)
    )


def _event(alert: Alert, recovered: bool, events: list[Any]) -> None:
    data: dict[str, Any] = {
        "alert_id": alert.alert_id,
        "kind": alert.kind,
        "severity": alert.severity,
        "enclosure_id": alert.enclosure_id,
        "session_id": alert.session_id,
        "message": alert.message,
        "recovered": recovered,
        "raised_at": alert.raised_at,
        "recovered_at": alert.recovered_at,
    }
    events.append(("alert", data, alert.enclosure_id, None))


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
    log.warning("alert %s on %s: %s", kind, enclosure_id, message)
    return alert


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
            f"the clock of {enclosure_id} is {after:+.1f} s off the service's: its recording"
            " windows are judged by the service's clock, but its file and frame times follow"
            " its own; check its time synchronisation (NTP)",
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
    log.info("alert %s on %s recovered", kind, enclosure_id)
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
