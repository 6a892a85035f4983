"""iterations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 20:42:06.013994
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('iterations',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('project_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('last_modified', sa.DateTime(), nullable=False),
    sa.Column('trained_at', sa.DateTime(), nullable=True),
    sa.Column('training_seconds', sa.Float(), nullable=True),
    sa.Column('domain_id', sa.String(length=36), nullable=False),
    sa.Column('classification_type', sa.String(length=16), nullable=True),
    sa.Column('training_type', sa.String(length=16), nullable=False),
    sa.Column('reserved_budget_in_hours', sa.Integer(), nullable=False),
    sa.Column('notification_email', sa.String(length=320), nullable=True),
    sa.Column('selected_tag_ids', sa.JSON(), nullable=True),
    sa.Column('training_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('model_key', sa.String(length=256), nullable=True),
    sa.Column('backbone', sa.String(length=64), nullable=True),
    sa.Column('publish_name', sa.String(length=256), nullable=True),
    sa.Column('published_resource_id', sa.String(length=36), nullable=True),
    sa.Column('original_publish_resource_id', sa.String(length=512), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_iterations_project_id_projects'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['published_resource_id'], ['resources.id'], name=op.f('fk_iterations_published_resource_id_resources'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_iterations')),
    sa.UniqueConstraint('project_id', 'name', name='uq_iterations_project_name'),
    sa.UniqueConstraint('project_id', 'publish_name', name='uq_iterations_project_publish_name')
    )
    with op.batch_alter_table('iterations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_iterations_project_id'), ['project_id'], unique=False)
        batch_op.create_index('ix_iterations_status_created', ['status', 'created'], unique=False)

    op.create_table('image_embeddings',
    sa.Column('image_id', sa.String(length=36), nullable=False),
    sa.Column('backbone', sa.String(length=64), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_image_embeddings_image_id_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id', 'backbone', name=op.f('pk_image_embeddings'))
    )
    op.create_table('iteration_images',
    sa.Column('iteration_id', sa.String(length=36), nullable=False),
    sa.Column('image_id', sa.String(length=36), nullable=False),
    sa.Column('tag_ids', sa.JSON(), nullable=False),
    sa.Column('predictions', sa.JSON(), nullable=True),
    sa.Column('fold', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_iteration_images_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['iteration_id'], ['iterations.id'], name=op.f('fk_iteration_images_iteration_id_iterations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('iteration_id', 'image_id', name=op.f('pk_iteration_images'))
    )
    with op.batch_alter_table('iteration_images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_iteration_images_image_id'), ['image_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('iteration_images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_iteration_images_image_id'))

    op.drop_table('iteration_images')
    op.drop_table('image_embeddings')
    with op.batch_alter_table('iterations', schema=None) as batch_op:
        batch_op.drop_index('ix_iterations_status_created')
        batch_op.drop_index(batch_op.f('ix_iterations_project_id'))

    op.drop_table('iterations')

