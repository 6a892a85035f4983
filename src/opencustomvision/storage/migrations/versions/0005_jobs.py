"""jobs: background work claimed by one worker at a time, with heartbeats; workers' signs of life

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:30:00
"""
import uuid
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    jobs = op.create_table(
        'jobs',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('subject_id', sa.String(length=64), nullable=False),
        sa.Column('project_id', sa.String(length=36), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('progress', sa.Float(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('worker_id', sa.String(length=128), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(), nullable=True),
        sa.Column('cancel_requested', sa.Boolean(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('started', sa.DateTime(), nullable=True),
        sa.Column('finished', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_jobs_project_id_projects'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    )
    op.create_index('ix_jobs_status_created', 'jobs', ['status', 'created'])
    op.create_index('ix_jobs_kind_subject', 'jobs', ['kind', 'subject_id'])
    op.create_index(op.f('ix_jobs_project_id'), 'jobs', ['project_id'])
    op.create_table(
        'workers',
        sa.Column('id', sa.String(length=128), nullable=False),
        sa.Column('started', sa.DateTime(), nullable=False),
        sa.Column('last_seen', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workers')),
    )
    # Iterations queued before jobs existed were found by their status: give each its job.
    training = sa.table('iterations', sa.column('id', sa.String), sa.column('project_id', sa.String),
                        sa.column('status', sa.String), sa.column('created', sa.DateTime))
    connection = op.get_bind()
    queued = connection.execute(sa.select(training.c.id, training.c.project_id, training.c.created)
                                .where(training.c.status == 'Training')).all()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if queued:
        op.bulk_insert(jobs, [
            {'id': str(uuid.uuid4()), 'kind': 'training', 'subject_id': iteration_id, 'project_id': project_id,
             'status': 'queued', 'progress': 0.0, 'attempts': 0, 'cancel_requested': False, 'created': created or now}
            for iteration_id, project_id, created in queued
        ])


def downgrade() -> None:
    op.drop_table('workers')
    op.drop_index(op.f('ix_jobs_project_id'), table_name='jobs')
    op.drop_index('ix_jobs_kind_subject', table_name='jobs')
    op.drop_index('ix_jobs_status_created', table_name='jobs')
    op.drop_table('jobs')
