"""enclosures: in-place (HOT) updates for status ingest

No index on ``silent_after`` (it changes with every status) and fillfactor 40 on PostgreSQL,
so a status update rewrites the row in its page without touching any index.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 01:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('enclosures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enclosures_silent_after'))
    if op.get_bind().dialect.name == 'postgresql':
        # Applies to pages written from now on; existing rows gain room as they are updated.
        op.execute('ALTER TABLE enclosures SET (fillfactor = 40)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE enclosures RESET (fillfactor)')
    with op.batch_alter_table('enclosures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enclosures_silent_after'), ['silent_after'], unique=False)
