"""ended_logins: signing out of one sign-in ends its cookie, token and sockets only
("sign out everywhere" still bumps users.session_version)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 17:55:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(
    mysql.DATETIME(fsp=6), 'mysql')


def upgrade():
    op.create_table(
        'ended_logins',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('ended_at', UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'],
                                name=op.f('fk_ended_logins_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ended_logins')),
    )
    with op.batch_alter_table('ended_logins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ended_logins_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('ended_logins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ended_logins_user_id'))
    op.drop_table('ended_logins')
