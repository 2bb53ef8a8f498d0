"""GET /api/health: database and broker reachability, whether a bridge runs, version. No
authentication."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field
from sqlalchemy import text

from controlsvc import __version__
from controlsvc.api.web import database
from controlsvc.mqtt.health import ComponentHealth
from controlsvc.store import bridge_health
from controlsvc.store.db import utcnow

log = logging.getLogger(__name__)

bp = APIBlueprint("health", __name__, url_prefix="/api", abp_tags=[Tag(name="health")])


class BridgeHealth(BaseModel):
    ok: bool = Field(description="At least one bridge is running (its heartbeat is fresh)")
    since: datetime | None = Field(
        None,
        description="Up: when the longest-running live bridge started; down: when the last"
        " one stopped or fell silent (null if no bridge ever ran)",
    )
    running: int = Field(0, description="Bridges with a fresh heartbeat")
    detail: str | None = Field(None, description="Why it is not ok")


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when a component is not ok")
    version: str = Field(description="Service version")
    database: ComponentHealth
    broker: ComponentHealth
    bridge: BridgeHealth


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


def _check_bridge(db: ComponentHealth) -> BridgeHealth:
    if not db.ok:
        return BridgeHealth(ok=False, detail="unknown: the database is unreachable")
    try:
        with database().sessionmaker() as session:
            view = bridge_health.bridge_view(session, utcnow())
    except Exception as exc:  # any driver error: unknown, never a 500
        log.warning("health: cannot read the bridge heartbeats: %s", exc)
        return BridgeHealth(ok=False, detail=f"unknown: {type(exc).__name__}")
    return BridgeHealth(ok=view.ok, since=view.since, running=view.running, detail=view.detail)


@bp.get("/health", responses={200: Health, 503: Health}, security=[])
def health() -> Any:
    """Database and broker reachability, whether a bridge runs, and the service version."""
    db = _check_database()
    broker = _check_broker()
    bridge = _check_bridge(db)
    status = "ok" if db.ok and broker.ok and bridge.ok else "degraded"
    body = Health(status=status, version=__version__, database=db, broker=broker, bridge=bridge)
    return body.model_dump(mode="json"), (200 if db.ok else 503)
