"""payments.checked_at (failed payments confirmed at the processor by key) and refunds made
at the processor (refunds.requested_by empty: no one of ours asked)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 17:50:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(
    mysql.DATETIME(fsp=6), 'mysql')


def upgrade():
    with op.batch_alter_table('payments') as batch_op:
        batch_op.add_column(sa.Column('checked_at', UTC_DATETIME, nullable=True))
    with op.batch_alter_table('refunds') as batch_op:
        batch_op.alter_column('requested_by', existing_type=sa.Integer(), nullable=True)


def downgrade():
    with op.batch_alter_table('refunds') as batch_op:
        batch_op.alter_column('requested_by', existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table('payments') as batch_op:
        batch_op.drop_column('checked_at')
