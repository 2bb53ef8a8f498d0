"""events and event tickets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 21:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlsvc.store.db


revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('enclosure_id', sa.String(length=63), nullable=True),
    sa.Column('session_id', sa.String(length=64), nullable=True),
    sa.Column('command_id', sa.Uuid(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    # SQLite: AUTOINCREMENT, so an id is never reused after a purge (SSE resumes by id).
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_at'), ['at'], unique=False)
        batch_op.create_index('ix_events_enclosure_id_id', ['enclosure_id', 'id'], unique=False)

    op.create_table('event_tickets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_event_tickets_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_tickets')),
    sa.UniqueConstraint('ticket_hash', name=op.f('uq_event_tickets_ticket_hash'))
    )
    with op.batch_alter_table('event_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_tickets_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_tickets_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('event_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_tickets_user_id'))
        batch_op.drop_index(batch_op.f('ix_event_tickets_expires_at'))

    op.drop_table('event_tickets')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_enclosure_id_id')
        batch_op.drop_index(batch_op.f('ix_events_at'))

    op.drop_table('events')
