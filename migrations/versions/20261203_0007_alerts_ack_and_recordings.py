"""alerts acknowledged (who, when), enclosures expected online, recordings by enclosure

- ``alerts.acked_at``, ``acked_by_id``, ``acked_by``: an acknowledgement shared by every user;
  ``ix_alerts_raised_at_id`` for the newest-first list.
- ``enclosures.expected_online``: losing such an enclosure raises an alert outside sessions.
- ``ix_segments_enclosure_id_started_at``, ``ix_gaps_enclosure_id_started_at``: the recordings
  inventory and timeline of one enclosure across sessions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:45:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlsvc.store.db

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acked_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('acked_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('acked_by', sa.String(length=320), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_alerts_acked_by_id_users'), 'users', ['acked_by_id'], ['id'], ondelete='SET NULL')
        batch_op.create_index('ix_alerts_raised_at_id', ['raised_at', 'id'], unique=False)
    with op.batch_alter_table('enclosures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expected_online', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.create_index('ix_segments_enclosure_id_started_at', ['enclosure_id', 'started_at'], unique=False)
    with op.batch_alter_table('gaps', schema=None) as batch_op:
        batch_op.create_index('ix_gaps_enclosure_id_started_at', ['enclosure_id', 'started_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('gaps', schema=None) as batch_op:
        batch_op.drop_index('ix_gaps_enclosure_id_started_at')
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_index('ix_segments_enclosure_id_started_at')
    with op.batch_alter_table('enclosures', schema=None) as batch_op:
        batch_op.drop_column('expected_online')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_raised_at_id')
        batch_op.drop_constraint(batch_op.f('fk_alerts_acked_by_id_users'), type_='foreignkey')
        batch_op.drop_column('acked_by')
        batch_op.drop_column('acked_by_id')
        batch_op.drop_column('acked_at')
