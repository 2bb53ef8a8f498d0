"""token families and shared attempt counters

``revoked_token_families``: a refresh token used twice revokes every token of its login.
``attempt_counts``: the rate limits' counters, shared by every API worker.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 16:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlsvc.store.db


revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('revoked_token_families',
    sa.Column('family', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_revoked_token_families_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('family', name=op.f('pk_revoked_token_families'))
    )
    with op.batch_alter_table('revoked_token_families', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_revoked_token_families_expires_at'), ['expires_at'], unique=False)

    op.create_table('attempt_counts',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('window_index', sa.BigInteger(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('expires_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', 'window_index', name=op.f('pk_attempt_counts'))
    )
    with op.batch_alter_table('attempt_counts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attempt_counts_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('attempt_counts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attempt_counts_expires_at'))

    op.drop_table('attempt_counts')
    with op.batch_alter_table('revoked_token_families', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revoked_token_families_expires_at'))

    op.drop_table('revoked_token_families')
