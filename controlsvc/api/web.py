"""Flask glue shared by the blueprints: settings, the database and the per-request session.

One transaction per request: views and domain code only flush; `_finish_request` commits when
the response is a success and rolls back otherwise (style rule 4).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import TypeVar, cast

from flask import Flask, Response, current_app, g, request
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from controlsvc.api.errors import problem
from controlsvc.config.settings import Settings
from controlsvc.mqtt.health import ComponentHealth
from controlsvc.store.db import Database
from schemas import logs

log = logging.getLogger(__name__)

SETTINGS_KEY = "jaxmba.settings"
DATABASE_KEY = "jaxmba.database"
BROKER_PROBE_KEY = "jaxmba.broker_probe"
# What every request's session starts with in ``session.info`` (e.g. the store's hooks).
SESSION_INFO_KEY = "jaxmba.session_info"
# A health probe of the broker gives up after this long.
BROKER_PROBE_TIMEOUT_S = 1.0
# Requests that change nothing: run again once when their database connection was found dead.
RETRIED_METHODS = frozenset({"GET", "HEAD"})

T = TypeVar("T")


def settings() -> Settings:
    return cast(Settings, current_app.extensions[SETTINGS_KEY])


def database() -> Database:
    return cast(Database, current_app.extensions[DATABASE_KEY])


def db_session() -> Session:
    """The session of the current request (created on first use)."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = database().sessionmaker()
        session.info.update(current_app.extensions.get(SESSION_INFO_KEY, {}))
        g.db_session = session
    return session


def _finish_request(response: Response) -> Response:
    session: Session | None = g.get("db_session")
    if session is None:
        return response
    if response.status_code >= 400:
        session.rollback()
        return response
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        log.info("commit refused by a constraint: %s", exc.orig)
        return problem(409, "Conflict", "the change conflicts with existing data")
    except OperationalError:
        session.rollback()
        log.exception("database unavailable at commit")
        return problem(503, "Service unavailable", "the database cannot be reached")
    return response


# Path parameters that name an enclosure, session or command: every log line of the request
# carries them as fields (schemas.logs; [SERVICE] log_format = json).
_ID_PARAMS = {"eid": "enclosure_id", "sessions.id": "session_id", "commands.id": "command_id"}


def _bind_log_ids() -> None:
    args = request.view_args or {}
    ids = {}
    for name, value in args.items():
        field = _ID_PARAMS.get(name) or _ID_PARAMS.get(f"{request.blueprint}.{name}")
        if field is not None:
            ids[field] = str(value)
    if ids:
        g.log_ids_token = logs.set_ids(ids)


def _unbind_log_ids(_exc: BaseException | None) -> None:
    token = g.pop("log_ids_token", None)
    if token is not None:
        logs.reset_ids(token)


def _close_session(_exc: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()


def dispatch_retrying_reads(dispatch: Callable[[], T]) -> T:
    """Run the view; a read whose pooled connection turned out dead (the database restarted,
    or its sessions were terminated) runs once more on a fresh one instead of answering 503.

    The pool has by then dropped every connection made before the failure. Writes are not
    retried (one may have been applied before the connection died): they answer 503.
    """
    try:
        return dispatch()
    except OperationalError as exc:
        if request.method not in RETRIED_METHODS or not exc.connection_invalidated:
            raise
        log.warning(
            "database connection lost during %s %s (%s); running it again on a fresh one",
            request.method,
            request.path,
            exc.orig,
        )
        _close_session(None)
        return dispatch()


def tcp_broker_probe(host: str, port: int) -> object:
    """A health probe that only checks the broker accepts TCP connections."""

    def probe() -> ComponentHealth:
        started = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=BROKER_PROBE_TIMEOUT_S):
                pass
        except OSError as exc:
            return ComponentHealth(ok=False, detail=f"{host}:{port}: {exc.strerror or exc}")
        return ComponentHealth(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))

    return probe


def init_app(app: Flask, app_settings: Settings, db: Database) -> None:
    app.extensions[SETTINGS_KEY] = app_settings
    app.extensions[DATABASE_KEY] = db
    app.extensions.setdefault(
        BROKER_PROBE_KEY, tcp_broker_probe(app_settings.mqtt.host, app_settings.mqtt.port)
    )
    app.before_request(_bind_log_ids)
    app.after_request(_finish_request)
    app.teardown_request(_close_session)
    app.teardown_request(_unbind_log_ids)
