"""enclosures: the connection number of the latest lifecycle message

Agents number their broker connections within a boot and their Will carries the number of
the connection it was registered with: a Will older than the stored connection is stale.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('enclosures', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lifecycle_connection', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('enclosures', schema=None) as batch_op:
        batch_op.drop_column('lifecycle_connection')
