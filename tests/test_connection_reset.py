"""A pooled MariaDB connection given back after COMMIT is not rolled back again (one round
trip fewer per task), and one given back with its transaction open still is."""
import sqlalchemy as sa

from booking.extensions import db
from booking.transactions import run_transaction


def _rollbacks_and_id(app):
    """(ROLLBACK statements this connection ran, its id); leaves the session clean."""
    with app.app_context():
        count = int(db.session.execute(sa.text("SHOW SESSION STATUS LIKE 'Com_rollback'")).one()[1])
        conn_id = db.session.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        db.session.commit()
        db.session.remove()
    return count, conn_id


def test_a_committed_task_costs_no_rollback_on_return(app):
    first, conn_id = _rollbacks_and_id(app)
    for _ in range(3):
        with app.app_context():
            run_transaction(lambda s: s.execute(sa.text("SELECT 1")).scalar())
            db.session.remove()
    after, same_id = _rollbacks_and_id(app)
    assert same_id == conn_id, "the pool handed out another connection: nothing was measured"
    # With the pool's reset on return there would be 4: one after each transaction.
    assert after - first == 0


def test_an_open_transaction_is_still_rolled_back_when_its_connection_returns(app):
    with app.app_context():
        db.session.execute(sa.text("CREATE TABLE IF NOT EXISTS reset_probe (n INT PRIMARY KEY)"))
        db.session.execute(sa.text("DELETE FROM reset_probe"))
        db.session.commit()
        db.session.execute(sa.text("INSERT INTO reset_probe VALUES (1)"))
        db.session.remove()     # given back uncommitted
        other = sa.create_engine(db.engine.url, pool_size=1)
        try:
            with other.connect() as conn:
                conn.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 2"))
                # Neither visible nor locked: the insert was rolled back, its lock let go.
                assert conn.execute(sa.text("SELECT COUNT(*) FROM reset_probe")).scalar() == 0
                conn.execute(sa.text("INSERT INTO reset_probe VALUES (1)"))
                conn.rollback()
        finally:
            other.dispose()
        db.session.execute(sa.text("DROP TABLE reset_probe"))
        db.session.commit()
