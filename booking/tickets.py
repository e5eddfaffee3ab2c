"""Tickets: one per seat of a paid order, each with a signed code for its QR.

Tickets are created in the transaction that creates their order (checkout's
finish_payments calls issue_tickets_for), so there is never an order without its
tickets nor a ticket without its order; the audit checks both. Functions take
a session and never commit.
"""
import io
from datetime import timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import segno
import sqlalchemy as sa
from flask import current_app

from .errors import NotFound
from .locking import write_objects
from .models import Event, Order, Ticket, User, iso_utc
from .ticket_codes import TicketSigner


@lru_cache(maxsize=4)
def _signer(seeds):
    return TicketSigner.from_seeds(seeds)


def signer():
    """The TicketSigner of the configured keys (TICKET_SIGNING_KEY or instance/)."""
    return _signer(tuple(current_app.config["TICKET_SIGNING_KEYS"]))


def issue_tickets_for(session, orders):
    """Create a valid ticket with a signed code for each seat of new orders; returns them.
    One INSERT for all their tickets, then the codes (which sign the ids)."""
    tickets = [Ticket(order_id=order.id, event_id=order.event_id, seat_id=item.seat_id,
                      price_cents=item.price_cents, status="valid", created_at=order.created_at)
               for order in orders for item in order.items]
    session.add_all(tickets)
    session.flush()  # the ids, which the codes sign
    sign = signer()
    for ticket in tickets:
        ticket.code = sign.sign(ticket.id, ticket.event_id)
    write_objects(session, tickets, ("code",))  # one UPDATE, not one a ticket
    return tickets


def tickets_of(session, order_id):
    """The order's tickets with their seats, in seat order."""
    return session.scalars(sa.select(Ticket).where(Ticket.order_id == order_id)
                           .order_by(Ticket.seat_id)).all()


def ticket_json(ticket):
    """A ticket as the API shows it."""
    seat = ticket.seat
    return {"id": ticket.id, "seat_id": ticket.seat_id, "label": seat.label,
            "section": seat.section, "row": seat.row, "number": seat.number,
            "price_cents": ticket.price_cents, "status": ticket.status,
            "code": ticket.code if ticket.status != "void" else None,
            "checked_in_at": iso_utc(ticket.checked_in_at), "gate": ticket.gate}


def local_time(moment, timezone_name):
    """A naive UTC datetime in the venue's time zone (UTC when the zone is unknown)."""
    try:
        zone = ZoneInfo(timezone_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.replace(tzinfo=timezone.utc).astimezone(zone)


def order_documents(session, order_id):
    """(order, event, buyer, tickets) for the PDF, the calendar file and e-mails."""
    order = session.get(Order, order_id)
    if order is None:
        raise NotFound("No such order.", order_id=order_id)
    event = session.get(Event, order.event_id)
    buyer = session.get(User, order.user_id)
    return order, event, buyer, tickets_of(session, order_id)


def event_counts(session, event_id):
    """{sold, checked_in}: tickets that let someone in, and those used already."""
    rows = dict(session.execute(sa.select(Ticket.status, sa.func.count())
                                .where(Ticket.event_id == event_id)
                                .group_by(Ticket.status)).all())
    return {"sold": rows.get("valid", 0) + rows.get("checked_in", 0),
            "checked_in": rows.get("checked_in", 0)}


def void_ticket_ids(session, event_id):
    """Ids of the event's void tickets: what an offline scanner refuses besides forgeries."""
    return list(session.scalars(sa.select(Ticket.id).where(
        Ticket.event_id == event_id, Ticket.status == "void").order_by(Ticket.id)))


def qr_svg(order, ticket_id):
    """The SVG of a valid or checked-in ticket's QR code; NotFound for a void or unknown one."""
    ticket = next((t for t in order.tickets if t.id == ticket_id), None)
    if ticket is None or ticket.status == "void" or not ticket.code:
        raise NotFound("No such ticket.", ticket_id=ticket_id)
    buf = io.BytesIO()
    segno.make(ticket.code, error="m", micro=False).save(
        buf, kind="svg", scale=1, border=4, xmldecl=False, title=f"Ticket {ticket.id}")
    return buf.getvalue()
