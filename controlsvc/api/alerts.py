"""Alerts: what needs an operator's attention, shared by every user and browser tab.

Everybody reads; operators and admins acknowledge (once, for everybody: the other tabs learn it
from the ``alert.acked`` event).
"""

from __future__ import annotations

from typing import Annotated, Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field, StringConstraints

from controlsvc.api import tokens
from controlsvc.api.enclosures import EDITORS, READERS
from controlsvc.api.errors import problem_responses
from controlsvc.api.web import db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.mqtt import publisher as mqtt_publisher
from controlsvc.store import alert_context, alerts, eventlog, outbox
from controlsvc.store.db import utcnow
from schemas.base import StrictModel
from schemas.rest.alerts import ALERT_ID_PATTERN, AlertListQuery, AlertOut
from schemas.rest.common import Page

__all__ = ["bp", "register"]

bp = APIBlueprint(
    "alerts",
    __name__,
    url_prefix="/api/alerts",
    abp_tags=[Tag(name="alerts", description="Alerts: list, acknowledge")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401, 403),
)

AlertPage = Page[AlertOut]


class AlertPath(StrictModel):
    alert_id: Annotated[str, StringConstraints(pattern=ALERT_ID_PATTERN)] = Field(
        description="Alert id."
    )


@bp.get("", responses={200: AlertPage, **problem_responses(422)})
@tokens.require_role(*READERS)
def list_alerts(query: AlertListQuery) -> Any:
    """Alerts, newest first; ``state=open``, ``acknowledged=false``, ``since=`` (open or
    recovered after it), ``enclosure_id=``, ``session_id=``."""
    page = alerts.list_alerts(
        db_session(),
        limit=query.limit,
        cursor=query.cursor,
        state=query.state,
        acknowledged=query.acknowledged,
        since=query.since,
        enclosure_id=query.enclosure_id,
        session_id=query.session_id,
    )
    items = alert_context.with_context(db_session(), page.items)
    return {
        "items": [a.model_dump(mode="json") for a in items],
        "next_cursor": page.next_cursor,
    }


@bp.get("/<string:alert_id>", responses={200: AlertOut, **problem_responses(404, 422)})
@tokens.require_role(*READERS)
def get_alert(path: AlertPath) -> Any:
    """One alert."""
    session = db_session()
    out = alerts.alert_out(alerts.get_alert(session, path.alert_id))
    return alert_context.with_context(session, [out])[0].model_dump(mode="json")


@bp.post("/<string:alert_id>/ack", responses={200: AlertOut, **problem_responses(404, 422)})
@tokens.require_role(*EDITORS)
def acknowledge(path: AlertPath) -> Any:
    """Acknowledge an alert for everybody (operators and admins), with who and when;
    idempotent: the first acknowledgement stays."""
    session = db_session()
    events: list[eventlog.Intent] = []
    alert = alerts.acknowledge(session, path.alert_id, tokens.current_user(), events, now=utcnow())
    newest = eventlog.record_intents(session, events)
    out = alert_context.with_context(session, [alerts.alert_out(alert)])[0].model_dump(mode="json")
    outbox.commit_then_publish(  # the other tabs drop it at once
        session,
        mqtt_publisher.publisher_of(current_app),
        settings().mqtt.topic_prefix,
        notify=newest is not None,
        newest_event=newest,
    )
    return out


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    mqtt_publisher.init_app(app, app_settings)
    app.register_api(bp)
