"""exports: iteration exports (platform, flavour, package blob) and project export tokens

Revision ID: 0007_exports
Revises: 0006_scenario
Create Date: 2026-12-01 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_exports'
down_revision = '0006_scenario'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'exports',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('iteration_id', sa.String(length=36), nullable=False),
        sa.Column('project_id', sa.String(length=36), nullable=False),
        sa.Column('platform', sa.String(length=32), nullable=False),
        sa.Column('flavor', sa.String(length=32), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('exporter_version', sa.String(length=16), nullable=False),
        sa.Column('package_key', sa.String(length=256), nullable=True),
        sa.Column('package_bytes', sa.Integer(), nullable=True),
        sa.Column('failure_reason', sa.Text(), nullable=True),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('finished', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['iteration_id'], ['iterations.id'], name=op.f('fk_exports_iteration_id_iterations'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_exports_project_id_projects'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_exports')),
    )
    op.create_index('ix_exports_iteration_platform', 'exports', ['iteration_id', 'platform', 'flavor'])
    op.create_index(op.f('ix_exports_project_id'), 'exports', ['project_id'])
    op.create_table(
        'project_export_tokens',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('project_id', sa.String(length=36), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('expires', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_export_tokens_project_id_projects'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_project_export_tokens')),
    )
    op.create_index(op.f('ix_project_export_tokens_project_id'), 'project_export_tokens', ['project_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_project_export_tokens_project_id'), table_name='project_export_tokens')
    op.drop_table('project_export_tokens')
    op.drop_index(op.f('ix_exports_project_id'), table_name='exports')
    op.drop_index('ix_exports_iteration_platform', table_name='exports')
    op.drop_table('exports')
