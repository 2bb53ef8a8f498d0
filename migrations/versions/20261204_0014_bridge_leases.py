"""bridge leases: one bridge of several runs the timers

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 17:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlsvc.store.db

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bridge_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("acquired_at", controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_bridge_leases")),
    )


def downgrade() -> None:
    op.drop_table("bridge_leases")
