"""Row locks, always taken in one order: users, then seats (ascending id), then holds,
then payments. Every transaction that writes booking rows follows it, so concurrent
transactions wait for each other instead of deadlocking. The rows locked here are
written back in one UPDATE per table (write_rows, write_objects), not one a row."""
import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value

from .models import Hold, Payment, Seat, User


def lock_users(session, user_ids):
    """Serialize a buyer's requests across workers."""
    if user_ids:
        session.execute(sa.select(User.id).where(User.id.in_(sorted(user_ids)))
                        .order_by(User.id).with_for_update())


def _locked(session, model, ids, *conditions):
    """The rows of model with these ids (and conditions), locked in ascending id order."""
    if not ids:
        return []
    return session.scalars(sa.select(model).where(model.id.in_(sorted(ids)), *conditions)
                           .order_by(model.id).with_for_update()).all()


def lock_seats(session, seat_ids):
    """{id: Seat}, locked in ascending id order."""
    return {s.id: s for s in _locked(session, Seat, seat_ids)}


_SEAT_ROW = (Seat.id, Seat.event_id, Seat.status, Seat.version, Seat.hold_id,
             Seat.hold_expires_at, Seat.price_cents, Seat.blocked)


def lock_seat_rows(session, seat_ids, skip_locked=False):
    """{id: plain dict} of seats, locked in ascending id order (cheaper than ORM objects).

    skip_locked: leave out the seats another transaction has locked instead of waiting
    for them (for work that can wait for its next turn: the expiry sweep)."""
    if not seat_ids:
        return {}
    rows = session.execute(sa.select(*_SEAT_ROW).where(Seat.id.in_(sorted(seat_ids)))
                           .order_by(Seat.id).with_for_update(skip_locked=skip_locked))
    return {r.id: dict(r._mapping) for r in rows}


_WRITTEN = ("status", "hold_id", "hold_expires_at", "version")


def write_seat_rows(session, seats, chunk=500):
    """Write status, references and version of changed seat rows, one statement per chunk.

    Only for rows locked by lock_seat_rows in this transaction: the values are
    absolute (the version was read under the lock).
    """
    write_rows(session, Seat.__table__, seats, _WRITTEN, chunk)


def write_rows(session, table, rows, columns, chunk=500):
    """UPDATE table SET column = CASE id WHEN ... THEN ... END, ... WHERE id IN (...): the
    columns of rows ({"id": ..., column: value}) in one statement per chunk.

    For rows this transaction locked (or inserted): the values are absolute. An
    UPDATE of an ORM flush or an executemany is one round trip per row with PyMySQL.
    The statement is built as driver SQL because building the equivalent CASE
    expressions through SQLAlchemy costs more CPU than the database spends running it.
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    convert = {c: table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns}
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        sets, params = [], []
        for column in columns:
            fn = convert[column]
            sets.append(f"{column} = CASE id {f'WHEN {mark} THEN {mark} ' * len(part)}END")
            for row in part:
                value = row[column]
                params += (row["id"], fn(value) if fn and value is not None else value)
        params += [r["id"] for r in part]
        connection.exec_driver_sql(
            f"UPDATE {table.name} SET {', '.join(sets)} "
            f"WHERE id IN ({', '.join([mark] * len(part))})", tuple(params))


def write_objects(session, objects, columns, relationships=()):
    """Write these columns of ORM objects of one class in one statement (write_rows), and
    tell the session they are written, so that its next flush does not UPDATE them again
    one row at a time. Only the objects with one of the columns changed are written.

    relationships: those whose foreign key is among columns (set with it), marked
    written too. For objects this transaction locked or inserted (absolute values).
    """
    changed = [obj for obj in objects
               if any(sa.inspect(obj).attrs[c].history.has_changes() for c in columns)]
    if not changed:
        return
    write_rows(session, type(changed[0]).__table__,
               [{"id": obj.id, **{c: getattr(obj, c) for c in columns}} for obj in changed],
               columns)
    for obj in changed:
        for column in columns:
            set_committed_value(obj, column, getattr(obj, column))
        for name in relationships:
            if name in obj.__dict__:
                set_committed_value(obj, name, obj.__dict__[name])


# What outcome.set_seat changes in a Seat object (the payment path, booking/checkout.py).
_SEAT_OBJECT_COLUMNS = ("status", "hold_id", "hold_expires_at", "order_id", "version")


def write_seats(session, seats):
    """write_objects for Seat objects changed by outcome.set_seat."""
    write_objects(session, seats, _SEAT_OBJECT_COLUMNS, relationships=("hold",))


def lock_seats_of_holds(session, hold_ids):
    """{hold_id: {id: Seat}}: the seats pointing at each hold, locked in one statement.

    Grouped by the hold a seat points at once it is locked (an unlocked read found
    them; one that moved on meanwhile is not that hold's)."""
    wanted = set(hold_ids)
    ids = session.scalars(sa.select(Seat.id).where(Seat.hold_id.in_(sorted(wanted)))).all()
    by_hold = {hold_id: {} for hold_id in wanted}
    for seat_id, seat in lock_seats(session, ids).items():
        if seat.hold_id in by_hold:
            by_hold[seat.hold_id][seat_id] = seat
    return by_hold


def lock_holds(session, hold_ids, *conditions):
    return _locked(session, Hold, hold_ids, *conditions)


def lock_payments(session, payment_ids):
    """{id: Payment}, locked in ascending id order."""
    return {p.id: p for p in _locked(session, Payment, payment_ids)}
