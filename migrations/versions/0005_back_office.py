"""back office: venue layouts, seat plan positions and flags, price tiers, invitations,
per-event indexes for the dashboard

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 14:10:01.391578

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organizer_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('invited_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mariadb').with_variant(mysql.DATETIME(fsp=6), 'mysql'), nullable=False),
    sa.CheckConstraint("role IN ('admin', 'staff')", name=op.f('ck_invitations_role_valid')),
    sa.ForeignKeyConstraint(['invited_by'], ['users.id'], name=op.f('fk_invitations_invited_by_users')),
    sa.ForeignKeyConstraint(['organizer_id'], ['organizers.id'], name=op.f('fk_invitations_organizer_id_organizers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invitations')),
    sa.UniqueConstraint('organizer_id', 'email', name=op.f('uq_invitations_organizer_id_email'))
    )
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invitations_email'), ['email'], unique=False)

    op.create_table('price_tiers',
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('price_cents', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.CheckConstraint('price_cents >= 0', name=op.f('ck_price_tiers_price_not_negative')),
    sa.ForeignKeyConstraint(['event_id'], ['events.id'], name=op.f('fk_price_tiers_event_id_events')),
    sa.PrimaryKeyConstraint('event_id', 'name', name=op.f('pk_price_tiers'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=True))

    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.create_index('ix_holds_event_created', ['event_id', 'created_at'], unique=False)

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_event_created', ['event_id', 'created_at'], unique=False)

    with op.batch_alter_table('seats', schema=None) as batch_op:
        batch_op.add_column(sa.Column('x', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('y', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('tier', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('blocked', sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column('wheelchair', sa.Boolean(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('companion', sa.Boolean(), server_default=sa.text('0'), nullable=False))
        batch_op.add_column(sa.Column('restricted_view', sa.Boolean(), server_default=sa.text('0'), nullable=False))
        batch_op.create_check_constraint(op.f('ck_seats_blocked_valid'),
                                         "blocked IN ('hold', 'kill')")
        batch_op.create_check_constraint(op.f('ck_seats_blocked_available'),
                                         "blocked IS NULL OR status = 'available'")

    with op.batch_alter_table('venues', schema=None) as batch_op:
        batch_op.add_column(sa.Column('layout', sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mariadb').with_variant(mysql.MEDIUMTEXT(), 'mysql'), nullable=True))



def downgrade():
    with op.batch_alter_table('venues', schema=None) as batch_op:
        batch_op.drop_column('layout')

    with op.batch_alter_table('seats', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_seats_blocked_available'), type_='check')
        batch_op.drop_constraint(op.f('ck_seats_blocked_valid'), type_='check')
        batch_op.drop_column('restricted_view')
        batch_op.drop_column('companion')
        batch_op.drop_column('wheelchair')
        batch_op.drop_column('blocked')
        batch_op.drop_column('tier')
        batch_op.drop_column('y')
        batch_op.drop_column('x')

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_event_created')

    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.drop_index('ix_holds_event_created')

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('description')

    op.drop_table('price_tiers')
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invitations_email'))

    op.drop_table('invitations')
