"""Stripe: the intent each processor key made, and the webhook events applied

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 14:45:00

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(
    mysql.DATETIME(fsp=6), 'mysql')


def upgrade():
    op.create_table(
        'stripe_intents',
        sa.Column('processor_key', sa.String(length=100), nullable=False),
        sa.Column('intent_id', sa.String(length=255), nullable=False),
        sa.Column('amount_cents', sa.Integer(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('created_at', UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint('processor_key', name=op.f('pk_stripe_intents')),
        sa.UniqueConstraint('intent_id', name=op.f('uq_stripe_intents_intent_id')),
    )
    op.create_table(
        'stripe_events',
        sa.Column('id', sa.String(length=255), nullable=False),
        sa.Column('type', sa.String(length=100), nullable=False),
        sa.Column('received_at', UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events')),
    )


def downgrade():
    op.drop_table('stripe_events')
    op.drop_table('stripe_intents')
