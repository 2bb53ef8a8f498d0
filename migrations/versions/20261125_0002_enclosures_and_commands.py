"""enclosures and commands

Enclosures with their live state and latest status, state transitions, status history,
agent events (stored once per event id) and commands.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:09:03.776825+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlsvc.store.db


revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit keys.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
UTC = controlsvc.store.db.UTCDateTime(timezone=True)


def _enclosure_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ['enclosure_id'], ['enclosures.id'],
        name=op.f(f'fk_{table}_enclosure_id_enclosures'), ondelete='CASCADE',
    )


def upgrade() -> None:
    op.create_table('enclosures',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('location', sa.String(length=200), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('registered_at', UTC, nullable=False),
    sa.Column('registered', sa.Boolean(), nullable=False),
    sa.Column('broker_account_managed', sa.Boolean(), nullable=False),
    sa.Column('retired_at', UTC, nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_reason', sa.String(length=200), nullable=True),
    sa.Column('state_changed_at', UTC, nullable=True),
    sa.Column('lifecycle', sa.String(length=16), nullable=True),
    sa.Column('lifecycle_at', UTC, nullable=True),
    sa.Column('boot_id', sa.String(length=64), nullable=True),
    sa.Column('agent_version', sa.String(length=64), nullable=True),
    sa.Column('status_interval_s', sa.Double(), nullable=True),
    sa.Column('last_seen_at', UTC, nullable=True),
    sa.Column('silent_after', UTC, nullable=True),
    sa.Column('status', sa.JSON(), nullable=True),
    sa.Column('status_boot_id', sa.String(length=64), nullable=True),
    sa.Column('status_seq', sa.BigInteger(), nullable=True),
    sa.Column('status_at', UTC, nullable=True),
    sa.Column('status_received_at', UTC, nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enclosures'))
    )
    with op.batch_alter_table('enclosures', schema=None) as batch_op:
        batch_op.create_index('ix_enclosures_silent_after', ['silent_after'], unique=False)
        batch_op.create_index('ix_enclosures_state', ['state'], unique=False)

    op.create_table('enclosure_transitions',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('at', UTC, nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=False),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    _enclosure_fk('enclosure_transitions'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enclosure_transitions'))
    )
    with op.batch_alter_table('enclosure_transitions', schema=None) as batch_op:
        batch_op.create_index('ix_enclosure_transitions_enclosure_id_at', ['enclosure_id', 'at'], unique=False)

    op.create_table('status_history',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('boot_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('at', UTC, nullable=False),
    sa.Column('received_at', UTC, nullable=False),
    sa.Column('status', sa.JSON(), nullable=False),
    _enclosure_fk('status_history'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_status_history')),
    sa.UniqueConstraint('enclosure_id', 'boot_id', 'seq', name='uq_status_history_enclosure_id_boot_id_seq')
    )
    with op.batch_alter_table('status_history', schema=None) as batch_op:
        batch_op.create_index('ix_status_history_enclosure_id_at', ['enclosure_id', 'at'], unique=False)
        batch_op.create_index('ix_status_history_received_at', ['received_at'], unique=False)

    op.create_table('agent_events',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=True),
    sa.Column('at', UTC, nullable=False),
    sa.Column('received_at', UTC, nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    _enclosure_fk('agent_events'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_events')),
    sa.UniqueConstraint('enclosure_id', 'event_id', name='uq_agent_events_enclosure_id_event_id')
    )
    with op.batch_alter_table('agent_events', schema=None) as batch_op:
        batch_op.create_index('ix_agent_events_session_id', ['session_id'], unique=False)

    op.create_table('commands',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('deadline_at', UTC, nullable=False),
    sa.Column('sent_at', UTC, nullable=True),
    sa.Column('settled_at', UTC, nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('enclosure_state', sa.String(length=16), nullable=True),
    sa.Column('publish_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_commands_created_by_id_users'), ondelete='SET NULL'),
    _enclosure_fk('commands'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commands'))
    )
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.create_index('ix_commands_enclosure_id_created_at', ['enclosure_id', 'created_at'], unique=False)
        batch_op.create_index('ix_commands_state_deadline_at', ['state', 'deadline_at'], unique=False)


def downgrade() -> None:
    op.drop_table('commands')
    op.drop_table('agent_events')
    op.drop_table('status_history')
    op.drop_table('enclosure_transitions')
    op.drop_table('enclosures')
