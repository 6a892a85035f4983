"""Scenario's API over the same store: key pairs, assets (and their embeddings), training image details, captions, pairs

Revision ID: 0006_scenario
Revises: 0005
Create Date: 2026-12-01 09:00:00

Only new tables and one nullable column: SQLite's batch mode would rebuild an existing table, and dropping
a table that others reference with ON DELETE CASCADE deletes their rows.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_scenario'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('projects', sa.Column('scenario_type', sa.String(length=64), nullable=True))
    op.create_table('scenario_key_pairs',
    sa.Column('resource_id', sa.String(length=36), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_scenario_key_pairs_resource_id_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('resource_id', name=op.f('pk_scenario_key_pairs')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_scenario_key_pairs_key_hash'))
    )
    op.create_table('scenario_assets',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('resource_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('updated', sa.DateTime(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('original_key', sa.String(length=256), nullable=False),
    sa.Column('resized_key', sa.String(length=256), nullable=False),
    sa.Column('thumbnail_key', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_scenario_assets_resource_id_resources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scenario_assets'))
    )
    op.create_index('ix_scenario_assets_resource_created', 'scenario_assets', ['resource_id', 'created'], unique=False)
    op.create_table('scenario_asset_embeddings',
    sa.Column('asset_id', sa.String(length=36), nullable=False),
    sa.Column('backbone', sa.String(length=64), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('label', sa.String(length=256), nullable=False),
    sa.ForeignKeyConstraint(['asset_id'], ['scenario_assets.id'], name=op.f('fk_scenario_asset_embeddings_asset_id_scenario_assets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('asset_id', 'backbone', name=op.f('pk_scenario_asset_embeddings'))
    )
    op.create_table('training_image_details',
    sa.Column('image_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('source_asset_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_training_image_details_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_asset_id'], ['scenario_assets.id'], name=op.f('fk_training_image_details_source_asset_id_scenario_assets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('image_id', name=op.f('pk_training_image_details'))
    )
    op.create_index(op.f('ix_training_image_details_source_asset_id'), 'training_image_details', ['source_asset_id'], unique=False)
    op.create_table('image_captions',
    sa.Column('image_id', sa.String(length=36), nullable=False),
    sa.Column('text', sa.String(length=512), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('preset', sa.String(length=16), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_image_captions_image_id_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id', name=op.f('pk_image_captions'))
    )
    op.create_table('training_image_pairs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('source_image_id', sa.String(length=36), nullable=True),
    sa.Column('target_image_id', sa.String(length=36), nullable=True),
    sa.Column('instruction', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_training_image_pairs_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_image_id'], ['images.id'], name=op.f('fk_training_image_pairs_source_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_image_id'], ['images.id'], name=op.f('fk_training_image_pairs_target_image_id_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_image_pairs'))
    )
    op.create_index(op.f('ix_training_image_pairs_project_id'), 'training_image_pairs', ['project_id'], unique=False)
    op.create_index(op.f('ix_training_image_pairs_source_image_id'), 'training_image_pairs', ['source_image_id'], unique=False)
    op.create_index(op.f('ix_training_image_pairs_target_image_id'), 'training_image_pairs', ['target_image_id'], unique=False)


def downgrade() -> None:
    op.drop_table('training_image_pairs')
    op.drop_table('image_captions')
    op.drop_table('training_image_details')
    op.drop_table('scenario_asset_embeddings')
    op.drop_table('scenario_assets')
    op.drop_table('scenario_key_pairs')
    # Not batch mode: rebuilding projects on SQLite would cascade-delete what references it.
    op.drop_column('projects', 'scenario_type')
