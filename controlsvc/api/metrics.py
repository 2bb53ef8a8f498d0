"""GET /metrics (Prometheus text format) and the HTTP request metrics of every route.

Scraping needs an admin or operator access token, or the static `[SECRETS] metrics_token`
(`Authorization: Bearer <token>`; Prometheus `authorization: {credentials_file: ...}`).
With multiprocess metrics on (`controlsvc.metrics.setup_process`) any worker answers for all
workers and the bridge; `jaxmba_enclosures{state}` is counted from the database per scrape.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from flask import Flask, Response, g, request
from flask_jwt_extended import verify_jwt_in_request
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from controlsvc import metrics
from controlsvc.api import tokens
from controlsvc.api.errors import problem_responses
from controlsvc.api.web import db_session, settings
from controlsvc.config.settings import Settings
from controlsvc.domain.errors import Forbidden
from controlsvc.store.models.enclosures import Enclosure
from schemas.enums import EnclosureState, Role

__all__ = ["bp", "register"]

log = logging.getLogger(__name__)

SCRAPE_ROLES = frozenset({Role.ADMIN.value, Role.OPERATOR.value})
# Label values for requests that matched no route: never the raw path (unbounded series).
UNMATCHED_ROUTE = "<unmatched>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_START_KEY = "_jaxmba_request_started"

bp = APIBlueprint(
    "metrics",
    __name__,
    abp_tags=[Tag(name="operations", description="Health and metrics")],
)


def _static_token_ok(app_settings: Settings) -> bool:
    expected = app_settings.secrets.metrics_token.get_secret_value()
    if not expected:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _authorise() -> None:
    if _static_token_ok(settings()):
        return
    verify_jwt_in_request(locations=["headers"])
    user = tokens.current_user()
    if user.role not in SCRAPE_ROLES:
        raise Forbidden(f"metrics need the role admin or operator (you are {user.role})")


def _enclosure_counts() -> dict[str, int] | None:
    try:
        rows = db_session().execute(
            select(Enclosure.state, func.count())
            .where(Enclosure.retired_at.is_(None))
            .group_by(Enclosure.state)
        )
        return {str(state): int(count) for state, count in rows}
    except SQLAlchemyError as exc:
        db_session().rollback()
        log.warning("metrics: enclosures not counted, database unavailable (%s)", exc)
        return None


@bp.get(
    "/metrics",
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 403),
    },
    security=tokens.JWT_SECURITY,
)
def get_metrics() -> Any:
    """Prometheus metrics of the bridge and every API worker (admin, operator or scrape token)."""
    _authorise()
    counts = _enclosure_counts()
    extra = []
    if counts is not None:
        extra.append(metrics.enclosure_states(counts, [s.value for s in EnclosureState]))
    return Response(metrics.render(extra), mimetype=None, content_type=metrics.CONTENT_TYPE)


def _started() -> None:
    setattr(g, _START_KEY, time.perf_counter())


def _observe(response: Response) -> Response:
    started = g.get(_START_KEY)
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED_ROUTE
    method = request.method if request.method in KNOWN_METHODS else "other"
    metrics.HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
    if started is not None:
        metrics.HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
    return response


def install_request_metrics(app: Flask) -> None:
    """Count every request by route template and status, and time it.

    The counter runs after every other after_request function (Flask runs them last-registered
    first), so it sees the final status, including a failed commit's 503.
    """
    app.before_request(_started)
    app.after_request_funcs.setdefault(None, []).insert(0, _observe)


def register(app: Any, app_settings: Settings) -> None:
    tokens.init_app(app, app_settings)
    install_request_metrics(app)
    app.register_api(bp)
