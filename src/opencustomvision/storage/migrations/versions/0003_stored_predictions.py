"""stored predictions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 21:18:24.702491
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('predictions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('iteration_id', sa.String(length=36), nullable=True),
    sa.Column('domain_id', sa.String(length=36), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('application', sa.String(length=64), nullable=True),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('original_key', sa.String(length=256), nullable=False),
    sa.Column('resized_key', sa.String(length=256), nullable=False),
    sa.Column('thumbnail_key', sa.String(length=256), nullable=False),
    sa.Column('results', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['iteration_id'], ['iterations.id'], name=op.f('fk_predictions_iteration_id_iterations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_predictions_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions'))
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_predictions_iteration_id'), ['iteration_id'], unique=False)
        batch_op.create_index('ix_predictions_project_created', ['project_id', 'created'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index('ix_predictions_project_created')
        batch_op.drop_index(batch_op.f('ix_predictions_iteration_id'))

    op.drop_table('predictions')

