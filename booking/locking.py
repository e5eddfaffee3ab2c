"""Row locks, always taken in one order: users, then seats (ascending id), then holds,
then payments. Every transaction that writes booking rows follows it, so concurrent
transactions wait for each other instead of deadlocking."""
import sqlalchemy as sa

from .models import Hold, Payment, Seat, User


def lock_users(session, user_ids):
    """Serialize a buyer's requests across workers."""
    if user_ids:
        session.execute(sa.select(User.id).where(User.id.in_(sorted(user_ids)))
                        .order_by(User.id).with_for_update())


def lock_seats(session, seat_ids):
    """{id: Seat}, locked in ascending id order."""
    if not seat_ids:
        return {}
    seats = session.scalars(sa.select(Seat).where(Seat.id.in_(sorted(seat_ids)))
                            .order_by(Seat.id).with_for_update()).all()
    return {s.id: s for s in seats}


def lock_seats_of_hold(session, hold_id):
    """The seats currently pointing at a hold, locked."""
    ids = session.scalars(sa.select(Seat.id).where(Seat.hold_id == hold_id)).all()
    return lock_seats(session, ids)


def lock_holds(session, hold_ids, *conditions):
    if not hold_ids:
        return []
    return session.scalars(sa.select(Hold).where(Hold.id.in_(sorted(hold_ids)), *conditions)
                           .order_by(Hold.id).with_for_update()).all()


def lock_payment(session, payment_id):
    return session.scalar(sa.select(Payment).where(Payment.id == payment_id).with_for_update())
