"""The schema, built by the real migrations, on both databases the product runs on.

The services keep the booking rules; these tests show the schema backs them up
on its own: whatever code writes, a seat cannot be listed twice, be sold
without an order, or carry a negative price. Each database is created empty and
migrated with `flask --app wsgi db upgrade`, exactly as an operator would.
"""
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from booking.extensions import db
from booking.models import (Event, Hold, Order, Payment, RequestRecord, Seat, User, Venue,
                            utcnow)
from tests.conftest import SECRET, fresh_mysql_database, migrate
from tests.harness import ROOT

users, venues, events, seats = (User.__table__, Venue.__table__, Event.__table__,
                                Seat.__table__)
holds, orders, payments = Hold.__table__, Order.__table__, Payment.__table__
records = RequestRecord.__table__


@pytest.fixture(scope="module", params=["mariadb", "sqlite"])
def database(request, tmp_path_factory):
    """An empty database of each kind, migrated once for this module; dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'booking.db'}"
        migrate(url)
        yield url
        return
    with fresh_mysql_database("bo_schema") as url:
        yield url


@pytest.fixture
def conn(database):
    """A connection in a transaction that is rolled back: every test starts from empty."""
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()
    engine.dispose()


def _flask(url, *args):
    env = dict(os.environ, DATABASE_URL=url, SECRET_KEY=SECRET)
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def _head():
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


def test_migrations_build_exactly_the_models(database):
    """From empty, the migrations reach head and match every table, column and index."""
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == _head()
        assert compare_metadata(context, db.metadata) == []
        checks = {c["name"] for c in sa.inspect(connection).get_check_constraints("seats")}
    engine.dispose()
    assert {"ck_seats_refs_match_status", "ck_seats_status_valid",
            "ck_seats_price_not_negative", "ck_seats_version_not_negative"} <= checks


def test_upgrade_is_idempotent_and_reversible(tmp_path):
    """Upgrading twice changes nothing; downgrading to base leaves no table behind."""
    url = f"sqlite:///{tmp_path / 'roundtrip.db'}"
    _flask(url, "db", "upgrade")
    _flask(url, "db", "upgrade")
    _flask(url, "db", "downgrade", "base")
    engine = sa.create_engine(url)
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    _flask(url, "db", "upgrade")
    engine = sa.create_engine(url)
    assert {t.name for t in db.metadata.sorted_tables} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def _buyer_and_hold(conn, email, hold_status, amount_cents):
    """A buyer, a venue, an event and the buyer's hold in that status: their ids."""
    now = utcnow()
    ids = {}
    ids["user"] = conn.execute(users.insert().values(
        email=email, name="B", password_hash="x", created_at=now)).inserted_primary_key[0]
    ids["venue"] = conn.execute(venues.insert().values(
        name="Hall", timezone="UTC")).inserted_primary_key[0]
    ids["event"] = conn.execute(events.insert().values(
        venue_id=ids["venue"], name="Night", starts_at=now, currency="EUR",
        created_at=now)).inserted_primary_key[0]
    ids["hold"] = conn.execute(holds.insert().values(
        user_id=ids["user"], event_id=ids["event"], status=hold_status,
        amount_cents=amount_cents, currency="EUR", expires_at=now,
        created_at=now)).inserted_primary_key[0]
    return ids


@pytest.fixture
def rows(conn):
    """One of everything: a buyer, an event with two seats, a paid hold and its order."""
    now = utcnow()
    ids = _buyer_and_hold(conn, "b@example.test", "paid", 1000)
    for n in (1, 2):
        ids[f"seat{n}"] = conn.execute(seats.insert().values(
            event_id=ids["event"], section="Main", row="A", number=n, label=f"Main A{n}",
            price_cents=1000, status="available", version=0)).inserted_primary_key[0]
    ids["order"] = conn.execute(orders.insert().values(
        user_id=ids["user"], event_id=ids["event"], hold_id=ids["hold"], status="paid",
        amount_cents=1000, currency="EUR", created_at=now)).inserted_primary_key[0]
    return ids


def _seat_row(conn, seat_id):
    return conn.execute(sa.select(seats).where(seats.c.id == seat_id)).one()._asdict()


def _fails(conn, statement, *constraint_names):
    """The statement is refused (naming one of the constraints where the database does)."""
    with pytest.raises(sa.exc.DBAPIError) as caught:
        conn.execute(statement)
    message = str(caught.value.orig)
    if constraint_names and "UNIQUE constraint failed" not in message:
        assert any(name in message for name in constraint_names), message


def _seat(ids, **values):
    return seats.update().where(seats.c.id == ids["seat1"]).values(**values)


# (what is refused, statement from the rows' ids, constraints that may be named)
BAD_SEAT_STATES = [
    ("sold without an order", lambda i: _seat(i, status="sold"),
     ["ck_seats_refs_match_status"]),
    ("held without a hold", lambda i: _seat(i, status="held"),
     ["ck_seats_refs_match_status"]),
    ("available but naming a hold", lambda i: _seat(i, hold_id=i["hold"]),
     ["ck_seats_refs_match_status"]),
    ("available but naming an order", lambda i: _seat(i, order_id=i["order"]),
     ["ck_seats_refs_match_status"]),
    ("sold and still held", lambda i: _seat(i, status="sold", order_id=i["order"],
                                             hold_id=i["hold"]),
     ["ck_seats_refs_match_status"]),
    ("sold with an expiry", lambda i: _seat(i, status="sold", order_id=i["order"],
                                             hold_expires_at=utcnow()),
     ["ck_seats_refs_match_status"]),
    ("held and sold to an order", lambda i: _seat(i, status="held", hold_id=i["hold"],
                                                   order_id=i["order"]),
     ["ck_seats_refs_match_status"]),
    ("an unknown status", lambda i: _seat(i, status="reserved"),
     ["ck_seats_status_valid", "ck_seats_refs_match_status"]),
    ("a negative price", lambda i: _seat(i, price_cents=-1), ["ck_seats_price_not_negative"]),
    ("a negative version", lambda i: _seat(i, version=-1), ["ck_seats_version_not_negative"]),
]


@pytest.mark.parametrize("statement, names", [(s, n) for _, s, n in BAD_SEAT_STATES],
                         ids=[what for what, _, _ in BAD_SEAT_STATES])
def test_bad_seat_states_are_refused(conn, rows, statement, names):
    """Whatever a bug in the code writes, the seat row keeps a consistent state."""
    before = _seat_row(conn, rows["seat1"])
    _fails(conn, statement(rows), *names)
    assert _seat_row(conn, rows["seat1"]) == before


def test_consistent_seat_states_are_accepted(conn, rows):
    """The constraint allows each legal state: held (also while paying, with no expiry), sold."""
    conn.execute(_seat(rows, status="held", hold_id=rows["hold"], hold_expires_at=utcnow()))
    conn.execute(_seat(rows, hold_expires_at=None))
    conn.execute(_seat(rows, status="sold", hold_id=None, order_id=rows["order"]))
    row = _seat_row(conn, rows["seat1"])
    assert (row["status"], row["order_id"], row["hold_id"]) == ("sold", rows["order"], None)


def _payment(user_id, hold_id, key="pay-1", **values):
    """An insert of a valid payment row, with values overridden.

    Only columns the payments table has are set, so that the row stays valid as
    the payments work adds columns.
    """
    row = dict(user_id=user_id, hold_id=hold_id, idempotency_key=key, status="pending",
               amount_cents=1000, currency="EUR", brand="visa", last4="4242", processor="sim",
               processor_key=f"{user_id}:{key}", request_id="r-pay",
               created_at=utcnow(), updated_at=utcnow())
    row.update(values)
    return payments.insert().values({k: v for k, v in row.items() if k in payments.c})


BAD_ROWS = [
    ("negative hold amount", lambda i: holds.update().values(amount_cents=-5),
     ["ck_holds_amount_not_negative"]),
    ("unknown hold status", lambda i: holds.update().values(status="lost"),
     ["ck_holds_status_valid"]),
    ("negative order amount", lambda i: orders.update().values(amount_cents=-1),
     ["ck_orders_amount_not_negative"]),
    ("unknown order status", lambda i: orders.update().values(status="pending"),
     ["ck_orders_status_valid"]),
    ("negative payment", lambda i: _payment(i["user"], i["hold"], amount_cents=-1),
     ["ck_payments_amount_not_negative"]),
    ("unknown payment status", lambda i: _payment(i["user"], i["hold"], status="maybe"),
     ["ck_payments_status_valid"]),
    ("a currency that is not a code", lambda i: events.update().values(currency="EU"),
     ["ck_events_currency_code"]),
]


@pytest.mark.parametrize("statement, names", [(s, n) for _, s, n in BAD_ROWS],
                         ids=[what for what, _, _ in BAD_ROWS])
def test_bad_money_and_statuses_are_refused(conn, rows, statement, names):
    """Negative amounts and unknown statuses never reach holds, orders, payments or events."""
    _fails(conn, statement(rows), *names)


def _another_seat(i, **values):
    row = dict(event_id=i["event"], section="Main", row="A", number=9, label="Main A9",
               price_cents=1000, status="available", version=0)
    return seats.insert().values(**dict(row, **values))


DUPLICATES = [
    ("the same seat twice", lambda i: _another_seat(i, number=1, label="Main A1 again"),
     ["uq_seats_event_id_section_row_number"]),
    ("the same label twice in an event", lambda i: _another_seat(i, label="Main A1"),
     ["uq_seats_event_id_label"]),
    ("two accounts for one email", lambda i: users.insert().values(
        email="b@example.test", name="", password_hash="y", created_at=utcnow()),
     ["uq_users_email"]),
    ("two orders for one hold", lambda i: orders.insert().values(
        user_id=i["user"], event_id=i["event"], hold_id=i["hold"], status="paid",
        amount_cents=1000, currency="EUR", created_at=utcnow()), ["uq_orders_hold_id"]),
]


@pytest.mark.parametrize("statement, names", [(s, n) for _, s, n in DUPLICATES],
                         ids=[what for what, _, _ in DUPLICATES])
def test_duplicates_are_refused(conn, rows, statement, names):
    """A seat exists once per event, an email once, an order once per hold."""
    counts = {t.name: conn.scalar(sa.select(sa.func.count()).select_from(t))
              for t in (seats, users, orders)}
    with pytest.raises(sa.exc.IntegrityError) as caught:
        conn.execute(statement(rows))
    if conn.dialect.name != "sqlite":  # SQLite names the columns, not the constraint
        assert any(n in str(caught.value.orig) for n in names), caught.value.orig
    assert counts == {t.name: conn.scalar(sa.select(sa.func.count()).select_from(t))
                      for t in (seats, users, orders)}


def test_keyed_requests_and_payments_are_unique_per_user(conn, rows):
    """A request_id or an idempotency_key is recorded once per user, and per user only."""
    other = conn.execute(users.insert().values(
        email="c@example.test", name="", password_hash="x",
        created_at=utcnow())).inserted_primary_key[0]

    def record(user_id):
        return records.insert().values(user_id=user_id, request_id="r-1", kind="hold",
                                       event="hold_result", result="{}", created_at=utcnow())

    def payment(user_id):
        return _payment(user_id, rows["hold"])

    for make in (record, payment):
        conn.execute(make(rows["user"]))
        conn.execute(make(other))  # the same key from another buyer is another request
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(make(rows["user"]))


def test_same_seat_number_in_another_event_is_fine(conn, rows):
    """Uniqueness is per event: every event has its own Main A1."""
    second = conn.execute(events.insert().values(
        venue_id=rows["venue"], name="Matinee", starts_at=utcnow(), currency="EUR",
        created_at=utcnow())).inserted_primary_key[0]
    conn.execute(_another_seat(rows, event_id=second, number=1, label="Main A1"))


def test_a_holds_status_changes_without_a_lock_on_its_buyer(database):
    """The expiry sweep and a request taking over a lapsed hold change holds of buyers whose
    users rows they have not locked (requests lock those first, in id order). Through the
    index of the buyer's foreign key, a status change took a shared lock on the users row:
    out of the lock order, so sweeps waited for requests and deadlocked with them. Here
    another transaction holds the buyer's row, and the change must not wait for it."""
    if database.startswith("sqlite"):
        pytest.skip("SQLite locks the whole database, not rows")
    engine = sa.create_engine(database)
    with engine.begin() as c:
        ids = _buyer_and_hold(c, "lock@example.test", "held", 0)
    user, venue, event, hold = ids["user"], ids["venue"], ids["event"], ids["hold"]
    try:
        with engine.connect() as buyer, engine.connect() as sweep:
            with buyer.begin():
                buyer.execute(sa.select(users.c.id).where(users.c.id == user).with_for_update())
                with sweep.begin():
                    sweep.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 1"))
                    sweep.execute(holds.update().where(holds.c.id == hold)
                                  .values(status="expired"))
    finally:
        with engine.begin() as c:
            c.execute(holds.delete().where(holds.c.id == hold))
            c.execute(events.delete().where(events.c.id == event))
            c.execute(venues.delete().where(venues.c.id == venue))
            c.execute(users.delete().where(users.c.id == user))
        engine.dispose()
