"""JABS layer: stable integer ids of enclosures and sessions, registered legacy devices

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 16:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlsvc.store.db

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('jabs_enclosures',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=True),
    sa.Column('registered_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stream_requested_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['enclosure_id'], ['enclosures.id'], name=op.f('fk_jabs_enclosures_enclosure_id_enclosures'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jabs_enclosures')),
    sa.UniqueConstraint('enclosure_id', name=op.f('uq_jabs_enclosures_enclosure_id')),
    sa.UniqueConstraint('hostname', name=op.f('uq_jabs_enclosures_hostname')),
    sqlite_autoincrement=True
    )
    op.create_table('jabs_sessions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_jabs_sessions_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jabs_sessions')),
    sa.UniqueConstraint('session_id', name=op.f('uq_jabs_sessions_session_id')),
    sqlite_autoincrement=True
    )


def downgrade() -> None:
    op.drop_table('jabs_sessions')
    op.drop_table('jabs_enclosures')
