"""Flask glue shared by the blueprints: settings, the database and the per-request session.

One transaction per request: views and domain code only flush; `_finish_request` commits when
the response is a success and rolls back otherwise (style rule 4).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import cast

from flask import Flask, Response, current_app, g
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from controlsvc.api.errors import problem
from controlsvc.config import Settings
from controlsvc.db import Database

log = logging.getLogger(__name__)

SETTINGS_KEY = "jaxmba.settings"
DATABASE_KEY = "jaxmba.database"
BROKER_PROBE_KEY = "jaxmba.broker_probe"
# A health probe of the broker gives up after this long.
BROKER_PROBE_TIMEOUT_S = 1.0


def settings() -> Settings:
    return cast(Settings, current_app.extensions[SETTINGS_KEY])


def database() -> Database:
    return cast(Database, current_app.extensions[DATABASE_KEY])


def db_session() -> Session:
    """The session of the current request (created on first use)."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = database().sessionmaker()
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


def end_session() -> None:
    """Close the current request's database session (the next use opens a new one)."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()


def _close_session(_exc: BaseException | None) -> None:
    end_session()


def tcp_broker_probe(host: str, port: int) -> object:
    """A health probe that only checks the broker accepts TCP connections."""
    from controlsvc.api.health import ComponentHealth

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
    app.after_request(_finish_request)
    app.teardown_request(_close_session)
