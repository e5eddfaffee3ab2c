"""An event's orders as its organizer finds them: by buyer e-mail, order number or seat.

Functions take a session and never commit; the caller authorized the event.
"""
import re

import sqlalchemy as sa

from .errors import NotFound
from .models import ID_MAX, Order, OrderSeat, Seat, User, iso_utc


def search_orders(session, event_id, q="", limit=50):
    """The event's orders matching q, newest first.

    q: an order number ('123' or '#123'), an e-mail (whole, or a part with '@'
    or of a name), or a seat label ('Stalls A12', or its part). Empty: the latest.
    """
    q = (q or "").strip()
    query = sa.select(Order).join(User, User.id == Order.user_id).where(Order.event_id == event_id)
    number = re.fullmatch(r"#?(\d{1,10})", q)
    if number:
        order_id = int(number.group(1))
        seat_match = sa.select(OrderSeat.order_id).where(OrderSeat.label.like(f"%{q}%"))
        query = query.where(sa.or_(Order.id == order_id if order_id <= ID_MAX else sa.false(),
                                   Order.id.in_(seat_match)))
    elif q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        seat_match = sa.select(OrderSeat.order_id).join(Order).where(
            Order.event_id == event_id, OrderSeat.label.like(pattern, escape="\\"))
        query = query.where(sa.or_(User.email.like(pattern.lower(), escape="\\"),
                                   User.name.like(pattern, escape="\\"),
                                   Order.id.in_(seat_match)))
    orders = session.scalars(query.order_by(Order.id.desc()).limit(limit)).all()
    emails = dict(session.execute(sa.select(User.id, User.email).where(
        User.id.in_({o.user_id for o in orders}))).all()) if orders else {}
    return [{"id": o.id, "status": o.status, "amount_cents": o.amount_cents,
             "currency": o.currency, "created_at": iso_utc(o.created_at),
             "buyer_email": emails.get(o.user_id), "seats": [i.label for i in o.items]}
            for o in orders]


def order_of_event(session, event_id, order_id):
    """One order of the event, in full; raises NotFound (also for another event's order)."""
    order = session.get(Order, order_id) if 0 < order_id <= ID_MAX else None
    if order is None or order.event_id != event_id:
        raise NotFound("No such order.", order_id=order_id)
    buyer = session.get(User, order.user_id)
    states = dict(session.execute(sa.select(Seat.id, Seat.order_id).where(
        Seat.id.in_([i.seat_id for i in order.items]))).all())
    payment = order.payment
    return {"id": order.id, "event_id": order.event_id, "status": order.status,
            "amount_cents": order.amount_cents, "currency": order.currency,
            "created_at": iso_utc(order.created_at),
            "buyer": {"id": buyer.id, "email": buyer.email, "name": buyer.name},
            "seats": [{"id": i.seat_id, "label": i.label, "price_cents": i.price_cents,
                       "refunded": states.get(i.seat_id) != order.id} for i in order.items],
            "payment": {"brand": payment.brand, "last4": payment.last4,
                        "reference": payment.reference, "status": payment.status}
            if payment else None}
