"""What a health probe of one component answers: ``GET /api/health`` shows one for the database
and one for the broker. The broker's probe is this process's MQTT connection
(``controlsvc.mqtt.publisher``), or a TCP connect when it has none (``controlsvc.api.web``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ComponentHealth"]


class ComponentHealth(BaseModel):
    ok: bool = Field(description="Reachable and working")
    latency_ms: float | None = Field(None, description="Round trip of the check")
    detail: str | None = Field(None, description="Why it is not ok")
