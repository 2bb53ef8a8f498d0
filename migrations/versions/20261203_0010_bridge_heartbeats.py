"""bridge heartbeats

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 16:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlsvc.store.db


revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('bridge_heartbeats',
    sa.Column('bridge_id', sa.String(length=255), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('started_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('beat_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('bridge_id', name=op.f('pk_bridge_heartbeats'))
    )


def downgrade() -> None:
    op.drop_table('bridge_heartbeats')
