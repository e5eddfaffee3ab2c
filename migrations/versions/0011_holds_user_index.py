"""holds: the buyer's foreign key gets an index of its own, (user_id); the open-hold
lookups use (status, user_id) instead of (user_id, status)

InnoDB checks a foreign key whenever a row's change touches a column of the index the
key uses. With (user_id, status) as that index, every change of a hold's status (the
expiry sweep, a taken-over hold, a payment) took a shared lock on the buyer's users
row, out of the lock order (users, seats, holds) every request transaction follows:
the sweep waited for buyers' requests while it held thousands of seat locks, and
requests deadlocked with it and with each other (30 to 40 deadlocks a minute in
bench/holds.py). A status change no longer touches the key's index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 03:20:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    # The new indexes first: the foreign key needs one on user_id at every moment.
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.create_index('ix_holds_user', ['user_id'], unique=False)
        batch_op.create_index('ix_holds_status_user', ['status', 'user_id'], unique=False)
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.drop_index('ix_holds_user_status')


def downgrade():
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.create_index('ix_holds_user_status', ['user_id', 'status'], unique=False)
    with op.batch_alter_table('holds', schema=None) as batch_op:
        batch_op.drop_index('ix_holds_status_user')
        batch_op.drop_index('ix_holds_user')
