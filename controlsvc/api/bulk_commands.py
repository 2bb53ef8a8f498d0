"""``POST /api/commands/bulk``: one command kind to many enclosures (operators and admins).

The fleet view's bulk actions (ping, restart agents) go through here; the per-enclosure
logic is ``controlsvc.store.bulk_commands``. Each command then settles as any other, with its
``command.updated`` events on the event stream.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

from controlsvc.api import tokens
from controlsvc.api.commands import BODY_PROBLEMS, SENDERS
from controlsvc.api.errors import problem_responses
from controlsvc.api.web import db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.mqtt import publisher as mqtt_publisher
from controlsvc.store import bulk_commands
from controlsvc.store.db import utcnow
from schemas.enums import CommandKind
from schemas.rest.bulk import BulkCommandCreate, BulkCommandOut
from schemas.topics import Topics

__all__ = ["bp", "register"]

bp = APIBlueprint(
    "bulk_commands",
    __name__,
    url_prefix="/api/commands",
    abp_tags=[Tag(name="commands")],
    abp_security=tokens.JWT_SECURITY,
    abp_responses=problem_responses(401, 403),
)


@bp.post("/bulk", responses={202: BulkCommandOut, **problem_responses(*BODY_PROBLEMS)})
@tokens.require_role(*SENDERS)
def send_bulk(body: BulkCommandCreate) -> Any:
    """Send one command kind (ping, rebirth, restart_agent) to up to 5,000 enclosures: 202
    with one item per enclosure, in the order asked: its command record (``sent``, or
    ``pending`` when the broker could not take it: the bridge publishes it), or a problem (404
    unknown, 409 retired) when no command was created for it.
    """
    items = bulk_commands.send_bulk(
        db_session(),
        mqtt_publisher.publisher_of(current_app),
        Topics(settings().mqtt.topic_prefix),
        CommandKind(body.kind),
        body.enclosure_ids,
        body.timeout_s,
        created_by_id=tokens.current_identity().user_id,
        now=utcnow(),
    )
    return BulkCommandOut(items=items).model_dump(mode="json"), 202


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    mqtt_publisher.init_app(app, app_settings)
    app.register_api(bp)
