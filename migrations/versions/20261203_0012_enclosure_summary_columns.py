"""enclosures: what the fleet summary shows of the latest status, and when the registry
fields were last edited

``GET /api/enclosures/summary`` reads 2,000 enclosures in one statement; taking a few values
out of 2,000 status documents (in SQL or in Python) cost ten times the read itself, so the
bridge keeps them beside the status as plain columns. ``edited_at`` moves when an enclosure's
name, location, notes or expected_online change: part of the summary's ETag. Existing rows
are filled from their stored status.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 19:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ERROR_MAX = 80


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("summary_disk_free_pct", sa.Double(), nullable=True),
        sa.Column("summary_clock_offset_s", sa.Double(), nullable=True),
        sa.Column("summary_fps", sa.Double(), nullable=True),
        sa.Column("summary_error", sa.String(length=ERROR_MAX), nullable=True),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True),
    ]


def _number(value: Any, digits: int) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return round(float(value), digits)


def _values(status: Any) -> dict[str, Any]:
    """controlsvc.store.fleet_summary.status_values as of this revision (a migration keeps its own)."""
    status = status if isinstance(status, dict) else {}
    camera = status.get("camera") or {}
    system = status.get("system") or {}
    clock = status.get("clock") or {}
    connected = camera.get("connected", True) is not False
    free, total = system.get("disk_free_bytes"), system.get("disk_total_bytes")
    error = None
    if status.get("last_error"):
        error = str(status["last_error"])
    elif camera.get("error"):
        error = f"camera: {camera['error']}"
    elif camera and not connected:
        error = f"camera {camera.get('source') or ''} not connected".replace("  ", " ")
    if error is not None and len(error) > ERROR_MAX:
        error = error[: ERROR_MAX - 1] + "…"
    return {
        "summary_disk_free_pct": _number(100.0 * free / total, 1)
        if isinstance(free, int | float) and isinstance(total, int | float) and total
        else None,
        "summary_clock_offset_s": _number(clock.get("offset_s"), 3),
        "summary_fps": _number(camera.get("measured_fps"), 1) if connected else None,
        "summary_error": error,
    }


def upgrade() -> None:
    with op.batch_alter_table("enclosures", schema=None) as batch_op:
        for column in _columns():
            batch_op.add_column(column)
    bind = op.get_bind()
    enclosures = sa.table(
        "enclosures",
        sa.column("id", sa.String()),
        sa.column("status", sa.JSON()),
        *[sa.column(c.name, c.type) for c in _columns()[:-1]],
    )
    rows = bind.execute(
        sa.select(enclosures.c.id, enclosures.c.status).where(enclosures.c.status.is_not(None))
    )
    for eid, status in list(rows):
        bind.execute(enclosures.update().where(enclosures.c.id == eid).values(**_values(status)))


def downgrade() -> None:
    with op.batch_alter_table("enclosures", schema=None) as batch_op:
        for column in reversed(_columns()):
            batch_op.drop_column(column.name)
