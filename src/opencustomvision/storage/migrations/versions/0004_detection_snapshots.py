"""detection snapshots: the regions an iteration trained on and its held-out detections

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 00:25:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('iteration_images') as batch:
        batch.add_column(sa.Column('regions', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('detections', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('iteration_images') as batch:
        batch.drop_column('detections')
        batch.drop_column('regions')
