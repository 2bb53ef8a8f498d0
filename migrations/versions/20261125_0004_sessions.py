"""recording sessions: sessions, their enclosures, segments, gaps, alerts, desired versions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import controlsvc.store.db

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('alert_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=True),
    sa.Column('session_id', sa.String(length=64), nullable=True),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.Column('raised_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('recovered_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('notify_pending', sa.String(length=16), nullable=True),
    sa.Column('notified_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('mailed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('alert_id', name=op.f('uq_alerts_alert_id'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_enclosure_id_kind_recovered_at', ['enclosure_id', 'kind', 'recovered_at'], unique=False)
        batch_op.create_index('ix_alerts_pending', ['notify_pending'], unique=False)

    op.create_table('desired_versions',
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=True),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('updated_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_version', sa.BigInteger(), nullable=False),
    sa.Column('published_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['enclosure_id'], ['enclosures.id'], name=op.f('fk_desired_versions_enclosure_id_enclosures'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('enclosure_id', name=op.f('pk_desired_versions'))
    )
    op.create_table('sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('duration_s', sa.BigInteger(), nullable=False),
    sa.Column('start_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('end_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('target_fps', sa.Integer(), nullable=True),
    sa.Column('fragment_hourly', sa.Boolean(), nullable=False),
    sa.Column('segment_minutes', sa.Integer(), nullable=True),
    sa.Column('apply_filter', sa.Boolean(), nullable=False),
    sa.Column('created_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('started_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('archived_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('progress_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_sessions_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index('ix_sessions_created_at_id', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_sessions_status', ['status'], unique=False)

    op.create_table('gaps',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=128), nullable=False),
    sa.Column('cause', sa.String(length=64), nullable=False),
    sa.Column('started_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('gap_s', sa.Double(), nullable=False),
    sa.ForeignKeyConstraint(['enclosure_id'], ['enclosures.id'], name=op.f('fk_gaps_enclosure_id_enclosures'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_gaps_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gaps')),
    sa.UniqueConstraint('enclosure_id', 'event_id', name='uq_gaps_enclosure_id_event_id')
    )
    with op.batch_alter_table('gaps', schema=None) as batch_op:
        batch_op.create_index('ix_gaps_session_id_enclosure_id', ['session_id', 'enclosure_id'], unique=False)

    op.create_table('segments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('started_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('frames', sa.BigInteger(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('sidecar_path', sa.String(length=1024), nullable=True),
    sa.Column('received_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['enclosure_id'], ['enclosures.id'], name=op.f('fk_segments_enclosure_id_enclosures'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_segments_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segments')),
    sa.UniqueConstraint('session_id', 'enclosure_id', 'path', name='uq_segments_session_id_enclosure_id_path')
    )
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.create_index('ix_segments_session_id_started_at', ['session_id', 'started_at'], unique=False)

    op.create_table('session_enclosures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('enclosure_id', sa.String(length=64), nullable=False),
    sa.Column('file_prefix', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=True),
    sa.Column('state_changed_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('starting_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stopped_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lost_since', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('frames', sa.BigInteger(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('segments_s', sa.Double(), nullable=False),
    sa.Column('live_s', sa.Double(), nullable=False),
    sa.Column('live_frames', sa.BigInteger(), nullable=False),
    sa.Column('last_frame_at', controlsvc.store.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('gap_s', sa.Double(), nullable=False),
    sa.Column('gaps', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['enclosure_id'], ['enclosures.id'], name=op.f('fk_session_enclosures_enclosure_id_enclosures'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_session_enclosures_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_session_enclosures')),
    sa.UniqueConstraint('session_id', 'enclosure_id', name='uq_session_enclosures_session_id_enclosure_id')
    )
    with op.batch_alter_table('session_enclosures', schema=None) as batch_op:
        batch_op.create_index('ix_session_enclosures_enclosure_id_state', ['enclosure_id', 'state'], unique=False)
        batch_op.create_index('ix_session_enclosures_state', ['state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('session_enclosures', schema=None) as batch_op:
        batch_op.drop_index('ix_session_enclosures_state')
        batch_op.drop_index('ix_session_enclosures_enclosure_id_state')

    op.drop_table('session_enclosures')
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_index('ix_segments_session_id_started_at')

    op.drop_table('segments')
    with op.batch_alter_table('gaps', schema=None) as batch_op:
        batch_op.drop_index('ix_gaps_session_id_enclosure_id')

    op.drop_table('gaps')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_sessions_status')
        batch_op.drop_index('ix_sessions_created_at_id')

    op.drop_table('sessions')
    op.drop_table('desired_versions')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_pending')
        batch_op.drop_index('ix_alerts_enclosure_id_kind_recovered_at')

    op.drop_table('alerts')
