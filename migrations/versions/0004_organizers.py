"""organizers and their members; venues and events belong to an organizer

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 14:30:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(
    mysql.DATETIME(fsp=6), 'mysql')


def upgrade():
    op.create_table(
        'organizers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('created_at', UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_organizers')),
        sa.UniqueConstraint('name', name=op.f('uq_organizers_name')),
    )
    op.create_table(
        'memberships',
        sa.Column('organizer_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=10), nullable=False),
        sa.Column('created_at', UTC_DATETIME, nullable=False),
        sa.CheckConstraint("role IN ('admin', 'staff')", name=op.f('ck_memberships_role_valid')),
        sa.ForeignKeyConstraint(['organizer_id'], ['organizers.id'],
                                name=op.f('fk_memberships_organizer_id_organizers')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_memberships_user_id_users')),
        sa.PrimaryKeyConstraint('organizer_id', 'user_id', name=op.f('pk_memberships')),
    )
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_memberships_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('venues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('organizer_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_venues_organizer_id_organizers'),
                                    'organizers', ['organizer_id'], ['id'])
        batch_op.drop_constraint(batch_op.f('uq_venues_name'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_venues_organizer_id_name'),
                                          ['organizer_id', 'name'])

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('organizer_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_events_organizer_id'), ['organizer_id'],
                              unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_events_organizer_id_organizers'),
                                    'organizers', ['organizer_id'], ['id'])


def downgrade():
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_events_organizer_id_organizers'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_events_organizer_id'))
        batch_op.drop_column('organizer_id')

    with op.batch_alter_table('venues', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_venues_organizer_id_name'), type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_venues_name'), ['name'])
        batch_op.drop_constraint(batch_op.f('fk_venues_organizer_id_organizers'),
                                 type_='foreignkey')
        batch_op.drop_column('organizer_id')

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_memberships_user_id'))
    op.drop_table('memberships')
    op.drop_table('organizers')
