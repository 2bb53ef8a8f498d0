"""GET /api/health: database and broker reachability, version. No authentication."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field
from sqlalchemy import text

from controlsvc import __version__
from controlsvc.web import database

log = logging.getLogger(__name__)

bp = APIBlueprint("health", __name__, url_prefix="/api", abp_tags=[Tag(name="health")])


class ComponentHealth(BaseModel):
    ok: bool = Field(description="Reachable and working")
    latency_ms: float | None = Field(None, description="Round trip of the check")
    detail: str | None = Field(None, description="Why it is not ok")


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when a component is not ok")
    version: str = Field(description="Service version")
    database: ComponentHealth
    broker: ComponentHealth


def _check_database() -> ComponentHealth:
    started = time.perf_counter()
    try:
        with database().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means unreachable
        log.warning("health: database unreachable: %s", exc)
        return ComponentHealth(ok=False, detail=type(exc).__name__)
    return ComponentHealth(ok=True, latency_ms=round((time.perf_counter() - started) * 1000, 2))


def _check_broker() -> ComponentHealth:
    probe = current_app.extensions.get("jaxmba.broker_probe")
    if probe is None:
        return ComponentHealth(ok=False, detail="no broker connection configured")
    result: ComponentHealth = probe()
    return result


@bp.get("/health", responses={200: Health, 503: Health}, security=[])
def health() -> Any:
    """Database and broker reachability and the service version."""
    db = _check_database()
    broker = _check_broker()
    status = "ok" if db.ok and broker.ok else "degraded"
    body = Health(status=status, version=__version__, database=db, broker=broker)
    return body.model_dump(), (200 if db.ok else 503)
